"""Attacks on the masters' Raft port, replayed from issue 14, asserting the opposite outcome.

An attacker on the same network speaks libraft's own wire format from Python (forged
AppendEntries, a conflicting entry at index 1, a RequestVote storm with fake heartbeats), or
weir's handshake with the right key but the wrong identity, or holds handshakes open. Against
weir-master before the authenticated transport the first three succeeded (see docs/master.md).

Run: unshare -n sh -c 'ip link set lo up && WEIR_BUILD_DIR=build python3 -m pytest -q \
         tests/integration/test_attack_raft.py'
"""

import json
import os
import threading
import time

import pytest

from conftest import weir_binary
from weirtest import raftwire
from weirtest.cluster import TOKEN, HttpError, http_request

RAFT_PORT = 19200




def label_cmd(key, value, dataset="demo", rid="attacker:1"):
    cmd = {"op": "label_set", "id": rid, "dataset": dataset, "key": key, "value": value}
    return raftwire.pad8(json.dumps(cmd, separators=(",", ":")).encode())


def raft_id(m):
    return m.index + 1


def raft_address(m):
    return f"{m.address}:{RAFT_PORT}"


def all_labels(cluster):
    """Labels as every running master sees them (reads are served by followers too)."""
    out = {}
    for m in cluster.running():
        code, body, _ = http_request("GET", m.url("/v1/datasets/demo/labels"), timeout=3.0,
                                     token=TOKEN, max_redirects=0)
        if code == 200:
            out[m.name] = body["labels"]
    return out


def terms(cluster):
    return {m.name: (m.status() or {}).get("term") for m in cluster.running()}


def follower_of(cluster, leader):
    return next(m for m in cluster.running() if m is not leader)


def test_forged_append_entries_is_not_applied(cluster3):
    """Row 1: libraft's handshake and one AppendEntries (term + 1000) carrying label_set."""
    leader = cluster3.wait_leader()
    cluster3.put_label("before", "1")
    target = follower_of(cluster3, leader)
    st = target.status()
    term, applied = st["term"], st["applied"]

    sock = raftwire.connect(target.address, RAFT_PORT, source=leader.address)
    sent = raftwire.send_quietly(sock, raftwire.libraft_preamble(raft_id(leader),
                                                                  raft_address(leader)))
    sent = sent and raftwire.send_quietly(sock, raftwire.append_entries(
        term + 1000, applied, term, applied + 1, [(term + 1000, label_cmd("pwned", "yes"))]))
    # The master hangs up on bytes that are not its handshake (asserted last, so that a run
    # against an old build shows what the attack did).
    hung_up = raftwire.closed_by_peer(sock, timeout=5.0)
    sock.close()

    time.sleep(1.5)
    assert cluster3.wait_leader() is leader
    for name, labels in all_labels(cluster3).items():
        assert "pwned" not in labels, (name, labels)
        assert labels.get("before") == "1"
    for name, t in terms(cluster3).items():
        assert t is not None and t < term + 1000 and t <= term + 3, (name, t, term)
    cluster3.put_label("after", "1")  # still writable
    assert hung_up, "the Raft port kept a stranger's connection"
    assert "not a weir Raft handshake" in target.log()


def test_conflicting_entry_at_index_1_loses_nothing(cluster3):
    """Row 2: an AppendEntries conflicting with committed index 1, then a restart of all."""
    for i in range(10):
        cluster3.put_label(f"k{i}", str(i))
    before = {m.name: m.status()["applied"] for m in cluster3.running()}
    leader = cluster3.wait_leader()
    term = leader.status()["term"]

    hung_up = []
    for target in cluster3.running():
        claimed = next(m for m in cluster3.masters if m is not target)
        sock = raftwire.connect(target.address, RAFT_PORT, source=claimed.address)
        raftwire.send_quietly(sock, raftwire.libraft_preamble(raft_id(claimed),
                                                               raft_address(claimed)))
        raftwire.send_quietly(sock, raftwire.append_entries(
            term + 1000, 0, 0, 1, [(term + 1000, label_cmd("conflict", "x"))]))
        hung_up.append(raftwire.closed_by_peer(sock, timeout=5.0))
        sock.close()

    time.sleep(1.0)
    for m in cluster3.masters:
        st = m.status()
        assert st and st["role"] in ("leader", "follower"), (m.name, st, m.log()[-2000:])

    for m in cluster3.masters:
        assert m.stop() == 0
    cluster3.start()
    cluster3.wait_leader()
    cluster3.put_label("after-restart", "1")
    labels = all_labels(cluster3)
    for name, ls in labels.items():
        for i in range(10):
            assert ls.get(f"k{i}") == str(i), (name, ls)
        assert "conflict" not in ls
    for m in cluster3.masters:
        applied = raftwire.wait_until(lambda: (m.status() or {}).get("applied", 0) >= before[m.name],
                                      10.0)
        assert applied, (m.name, before[m.name], m.status())
    assert all(hung_up), hung_up


def test_vote_storm_and_fake_heartbeats_do_not_depose_the_leader(cluster3):
    """Row 3: RequestVote with term 100000, then fake heartbeats every 50 ms, for 3 s."""
    leader = cluster3.wait_leader()
    term = leader.status()["term"]
    stop = threading.Event()
    codes = []

    def writer():
        i = 0
        while not stop.is_set():
            try:
                code, _, _ = http_request("PUT", leader.url(f"/v1/datasets/demo/labels/w{i % 5}"),
                                          body={"value": str(i)}, token=TOKEN, timeout=2.0)
            except (OSError, HttpError) as e:
                code = repr(e)
            codes.append(code)
            i += 1
            time.sleep(0.1)

    t = threading.Thread(target=writer)
    t.start()
    closed = 0
    sent = 0
    try:
        end = time.monotonic() + 3.0
        first = True
        while time.monotonic() < end:
            for target in cluster3.masters:
                claimed = next(m for m in cluster3.masters if m is not target)
                try:
                    sock = raftwire.connect(target.address, RAFT_PORT, source=claimed.address,
                                            timeout=1.0)
                except OSError:
                    continue
                msg = raftwire.libraft_preamble(raft_id(claimed), raft_address(claimed))
                if first:
                    msg += raftwire.request_vote(100000, raft_id(claimed), 1 << 40, 100000)
                msg += raftwire.append_entries(100000, 0, 0, 0)
                raftwire.send_quietly(sock, msg)
                sent += 1
                closed += raftwire.closed_by_peer(sock, timeout=2.0)
                sock.close()
            first = False
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()

    assert codes and all(c == 200 for c in codes), codes
    assert cluster3.wait_leader() is leader
    for name, tm in terms(cluster3).items():
        assert tm is not None and tm < 100000 and tm <= term + 3, (name, tm, term)
    assert sent > 0
    assert closed == sent, f"{sent - closed} of {sent} forged connections were kept open"


def test_keyed_peer_with_wrong_identity_is_refused(cluster3):
    """The right key is not enough: raft id, claimed address and source address must be the
    YAML's; the wrong key with the right identity is refused too; the right everything is
    accepted (so the refusals are not an artefact of the test's client)."""
    leader = cluster3.wait_leader()
    target = follower_of(cluster3, leader)
    other = next(m for m in cluster3.masters if m is not target)
    key = raftwire.derive_key(TOKEN)
    tid, oid = raft_id(target), raft_id(other)

    def attempt(source, from_id, to_id, address, k=key):
        sock = raftwire.connect(target.address, RAFT_PORT, source=source)
        try:
            return raftwire.weir_handshake(sock, k, from_id, to_id, address)
        finally:
            sock.close()

    ok = attempt(other.address, oid, tid, raft_address(other))
    assert ok.stage == "accepted" and ok.challenge_mac_ok

    assert attempt(other.address, 9, tid, raft_address(other)).stage == "refused-hello"
    assert attempt(other.address, oid, tid, f"127.0.1.9:{RAFT_PORT}").stage == "refused-hello"
    assert attempt(other.address, oid, 9, raft_address(other)).stage == "refused-hello"
    assert attempt(other.address, tid, tid, raft_address(target)).stage == "refused-hello"
    # An address the YAML does not name: cut before it can say anything.
    sock = raftwire.connect(target.address, RAFT_PORT, source="127.0.1.9")
    assert raftwire.closed_by_peer(sock, timeout=3.0)
    sock.close()
    # The YAML's identity with a wrong key: the master's challenge does not verify either.
    bad = attempt(other.address, oid, tid, raft_address(other), k=raftwire.derive_key("guess"))
    assert bad.stage == "refused-proof" and bad.challenge_mac_ok is False

    log = target.log()
    assert "raft id 9 is not another master" in log
    assert "claims the address 127.0.1.9" in log
    assert "addressed to raft id 9" in log
    assert "not the address of a master" in log
    assert "wrong cluster secret" in log
    assert cluster3.wait_leader() is leader


def test_other_version_refused_with_a_clear_message(cluster3):
    leader = cluster3.wait_leader()
    other = follower_of(cluster3, leader)
    sock = raftwire.connect(leader.address, RAFT_PORT, source=other.address)
    sock.sendall(raftwire.hello(raft_id(other), raft_id(leader), raft_address(other), version=2))
    assert raftwire.closed_by_peer(sock)
    sock.close()
    assert "handshake version not supported" in leader.log()


def test_slow_loris_handshakes_are_cut_and_masters_still_join(cluster3):
    """Handshakes that trickle in are cut at the 2 s deadline (or dropped for newer ones past
    8 per address); meanwhile a restarted follower rejoins and writes go on."""
    leader = cluster3.wait_leader()
    follower = follower_of(cluster3, leader)
    stranger = next(m for m in cluster3.masters if m not in (leader, follower))
    stop = threading.Event()
    lifetimes = []
    lock = threading.Lock()

    def loris():
        # From a master's own address (the worst case: strangers' addresses are cut at once).
        while not stop.is_set():
            try:
                s = raftwire.connect(leader.address, RAFT_PORT, source=stranger.address)
            except OSError:
                time.sleep(0.05)
                continue
            start = time.monotonic()
            hello = raftwire.hello(raft_id(stranger), raft_id(leader), raft_address(stranger))
            for b in hello:
                if stop.is_set() or not raftwire.send_quietly(s, bytes([b])):
                    break
                time.sleep(0.3)
            else:
                raftwire.closed_by_peer(s, timeout=5.0)
            with lock:
                lifetimes.append(time.monotonic() - start)
            s.close()

    threads = [threading.Thread(target=loris) for _ in range(20)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        follower.kill()
        cluster3.put_label("during", "1")
        follower.start()
        target = leader.status()["applied"]
        caught_up = raftwire.wait_until(
            lambda: (follower.status() or {}).get("applied", 0) >= target, 15.0)
        assert caught_up, (follower.status(), follower.log()[-2000:])
        assert cluster3.wait_leader() is leader
        time.sleep(2.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert lifetimes
    # 60 slow bytes at 0.3 s would take 18 s; the deadline is 2 s (slack for a loaded machine).
    assert max(lifetimes) < 6.0, sorted(lifetimes)[-5:]
    log = leader.log()
    assert "no complete handshake within 2000 ms" in log or \
        "Dropped an unfinished Raft handshake" in log, log[-3000:]


def test_strangers_address_cut_at_once(cluster3):
    leader = cluster3.wait_leader()
    socks = [raftwire.connect(leader.address, RAFT_PORT, source="127.0.1.50") for _ in range(30)]
    start = time.monotonic()
    try:
        assert all(raftwire.closed_by_peer(s, timeout=3.0) for s in socks)
    finally:
        for s in socks:
            s.close()
    assert time.monotonic() - start < 2.0
    assert cluster3.wait_leader() is leader


def test_secret_file_and_a_master_with_another_secret(make_cluster, tmp_path):
    secret = tmp_path / "raft-secret"
    secret.write_text("first secret\n")
    os.chmod(secret, 0o600)
    c = make_cluster(n=3, first_address=1, raft_secret_file=str(secret))
    c.masters[0].start()
    c.masters[1].start()
    leader = c.wait_leader()
    c.put_label("a", "1")
    secret.write_text("another secret\n")
    third = c.masters[2].start()
    time.sleep(3.0)
    st = third.status()
    assert st and not st.get("leader"), st
    # Each side finds out from the other's challenge, the first proof it can check.
    assert raftwire.wait_until(lambda: "does not prove the cluster secret" in leader.log(), 5.0)
    # The third master may only accept (a new empty master waits to be added, members.c): it
    # sees its challenge rejected; when it connects out, it rejects the others' challenge.
    assert raftwire.wait_until(lambda: "closed after this master's challenge" in third.log()
                               or "does not prove the cluster secret" in third.log(), 5.0)
    assert c.wait_leader(exclude=third) is leader
    # The token alone is not the key when a secretFile is set.
    peer = next(m for m in c.masters[:2] if m is not leader)
    sock = raftwire.connect(leader.address, RAFT_PORT, source=peer.address)
    res = raftwire.weir_handshake(sock, raftwire.derive_key(TOKEN), raft_id(peer),
                                  raft_id(leader), raft_address(peer))
    sock.close()
    assert res.stage != "accepted"
    third.stop()
    secret.write_text("first secret\n")
    third.start()
    assert raftwire.wait_until(lambda: (third.status() or {}).get("leader") == leader.name, 10.0)


def test_no_secret_warns_and_still_runs(make_cluster):
    c = make_cluster(n=3, first_address=1, token=False)
    c.start()
    c.wait_leader()
    assert "Raft traffic is NOT authenticated" in c.masters[0].log()


def last_closed_segment(m):
    raft_dir = os.path.join(m.data_dir, "master", "raft")
    closed = sorted(f for f in os.listdir(raft_dir) if "-" in f and f[0].isdigit())
    return raft_dir, closed[-1]


def damage(path, offset=48):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def is_voter(leader, m):
    """LEADER's recorded membership has M as a voter and matches the YAML."""
    try:
        code, body, _ = http_request("GET", leader.url("/v1/config"), token=TOKEN, timeout=2.0)
    except (OSError, HttpError):
        return False
    if code != 200 or not body.get("converged"):
        return False
    return any(e.get("node") == m.name and e.get("role") == "voter"
               for e in body.get("members") or [])


def test_damaged_log_refuses_to_start_and_rejoin_recovers(cluster3):
    """Row 2's loss came from libraft setting a damaged segment aside and starting without its
    committed entries. A master must refuse instead, and --rejoin gets the state back."""
    for i in range(10):
        cluster3.put_label(f"k{i}", str(i))
    leader = cluster3.wait_leader()
    victim = follower_of(cluster3, leader)
    assert victim.stop() == 0
    raft_dir, seg = last_closed_segment(victim)
    before = sorted(os.listdir(raft_dir))
    damage(os.path.join(raft_dir, seg))

    victim.start()
    victim.proc.wait(timeout=20)
    assert victim.proc.returncode == 1
    log = victim.log()
    assert "cannot be loaded" in log and "Refusing to start" in log, log[-2000:]
    assert "--rejoin" in log
    assert sorted(os.listdir(raft_dir)) == before  # nothing renamed, nothing dropped

    # Started again without --rejoin: the same refusal, still nothing changed.
    victim.start()
    victim.proc.wait(timeout=20)
    assert victim.proc.returncode == 1
    assert sorted(os.listdir(raft_dir)) == before

    cluster3.put_label("while-away", "1")
    victim.start(extra_args=["--rejoin"])
    target = leader.status()["applied"]
    assert raftwire.wait_until(lambda: (victim.status() or {}).get("applied", 0) >= target,
                               15.0), (victim.status(), victim.log()[-2000:])
    assert (victim.status() or {}).get("leader") == leader.name
    aside = [d for d in os.listdir(os.path.dirname(raft_dir)) if d.startswith("raft.damaged-")]
    assert len(aside) == 1 and seg in os.listdir(os.path.join(os.path.dirname(raft_dir), aside[0]))
    assert "Rejoining" in victim.log()
    # The leader took it out of the membership and adds it back (docs/master.md, "A master
    # with an emptied log"): it votes once it is a voter again.
    assert raftwire.wait_until(lambda: is_voter(leader, victim), 15.0), cluster3.logs()
    # The rejoined master carries the whole state: it can lead.
    for m in cluster3.masters:
        if m is not victim:
            m.stop()
            break
    remaining = [m for m in cluster3.running()]
    assert victim in remaining
    new_leader = cluster3.wait_leader()
    labels = cluster3.labels()
    for i in range(10):
        assert labels.get(f"k{i}") == str(i)
    assert labels.get("while-away") == "1"
    assert new_leader in remaining


def test_rejoin_refused_without_a_leader_and_set_aside_segments_refused(make_cluster):
    c = make_cluster(n=3, first_address=1)
    c.start()
    c.wait_leader()
    c.put_label("a", "1")
    for m in c.masters:
        assert m.stop() == 0
    victim = c.masters[0]
    raft_dir, seg = last_closed_segment(victim)
    before = sorted(os.listdir(raft_dir))

    victim.start(extra_args=["--rejoin"])
    victim.proc.wait(timeout=20)
    assert victim.proc.returncode == 1
    assert "none of the other masters answers as a serving leader" in victim.log()
    assert sorted(os.listdir(raft_dir)) == before

    # A segment libraft renamed aside (auto-recovery of an older weir or of libraft's tools).
    os.rename(os.path.join(raft_dir, seg), os.path.join(raft_dir, "corrupt-1-" + seg))
    victim.start()
    victim.proc.wait(timeout=20)
    assert victim.proc.returncode == 1
    assert "libraft set the segment corrupt-1-" in victim.log()
