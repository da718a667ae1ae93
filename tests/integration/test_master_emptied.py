"""A master whose Raft log is gone (data directory deleted, or moved aside by --rejoin) catches up.

Runs against whatever libraft the build links: Debian's raft 0.15 and raft-cowsql 0.22.1 (built
with PKG_CONFIG_PATH pointing at it, run with LD_LIBRARY_PATH). On raft-cowsql the leader kept
the emptied follower's old match index and sent it only empty heartbeats (docs/master.md, "A
master with an emptied log"); the master now asks the leader to take it out of the membership
and add it back, which resets that progress on every libraft.

Run: WEIR_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_master_emptied.py
"""

import os
import shutil
import time

import pytest

from weirtest.cluster import http_request

BOUND_S = 20.0  # generous: the machine is shared and loaded


def raft_dir(master):
    return os.path.join(master.data_dir, "master", "raft")


def wait_caught_up(c, m, leader, what):
    """Waits until M follows LEADER with at least the leader's applied index."""
    deadline = time.monotonic() + BOUND_S
    s = ls = None
    while time.monotonic() < deadline:
        s, ls = m.status(), leader.status()
        if s and ls and s.get("leader") == leader.name and s["applied"] >= ls["applied"]:
            return s, ls
        time.sleep(0.1)
    raise AssertionError(f"{m.name} ({what}) did not catch up within {BOUND_S}s: "
                         f"{s} vs leader {ls}\n{c.logs()}")


def is_voter(c, leader, m):
    """LEADER's recorded membership has M as a voter and matches the YAML."""
    try:
        code, body, _ = http_request("GET", leader.url("/v1/config"), token=c.token)
    except OSError:
        return False
    return code == 200 and bool(body.get("converged")) and any(
        e.get("node") == m.name and e.get("role") == "voter" for e in body.get("members") or [])


def check_can_lead_with_everything(c, rejoined, leader, written):
    """The rejoined master holds the whole state and votes: with the old leader gone, only it
    and the other follower remain, so no leader can be elected without its vote, and the one
    elected (either of them) serves every label. It votes once the leader made it a voter again
    (it catches up as a non-voter first)."""
    deadline = time.monotonic() + BOUND_S
    while not is_voter(c, leader, rejoined):
        assert time.monotonic() < deadline, c.logs()
        time.sleep(0.1)
    leader.kill()
    new = c.wait_leader(timeout=BOUND_S)
    assert new is not leader
    c.put_label("after-failover", "1", deadline_s=BOUND_S)
    written["after-failover"] = "1"
    assert c.labels() == written
    if new is not rejoined:
        wait_caught_up(c, rejoined, new, "after the failover")


@pytest.mark.parametrize("snapshots", [False, True], ids=["log", "snapshot"])
def test_deleted_raft_dir_catches_up(make_cluster, snapshots):
    """Stop a follower, delete its raft directory, start it: it gets the state from the
    leader. 'log': the leader still holds entry 1 (no snapshot yet); 'snapshot': the leader's
    log was compacted, so the state comes as a snapshot."""
    c = make_cluster(n=3, first_address=1, snapshot_threshold=16 if snapshots else None)
    c.start()
    leader = c.wait_leader()
    written = {}
    for i in range(40):
        c.put_label(f"k{i}", str(i))
        written[f"k{i}"] = str(i)
    victim = next(m for m in c.masters if m is not leader)
    wait_caught_up(c, victim, leader, "before the stop")
    assert victim.stop() == 0
    shutil.rmtree(raft_dir(victim))
    # Writes while it is away, then it comes back empty.
    for i in range(5):
        c.put_label(f"away{i}", str(i))
        written[f"away{i}"] = str(i)
    victim.start()
    s, ls = wait_caught_up(c, victim, leader, "deleted raft dir")
    assert s["applied"] > 40, s
    # New writes reach it too.
    c.put_label("later", "x")
    written["later"] = "x"
    wait_caught_up(c, victim, leader, "after a new write")
    assert c.wait_leader() is leader
    log = victim.log()
    assert "asked the leader to reset" in log, log[-3000:]
    check_can_lead_with_everything(c, victim, leader, written)


def test_rejoin_catches_up_and_leads(make_cluster):
    """--rejoin of a healthy follower (its log moved aside): the same catch-up."""
    c = make_cluster(n=3, first_address=1)
    c.start()
    leader = c.wait_leader()
    written = {}
    for i in range(30):
        c.put_label(f"r{i}", str(i))
        written[f"r{i}"] = str(i)
    victim = next(m for m in c.masters if m is not leader)
    wait_caught_up(c, victim, leader, "before the stop")
    assert victim.stop() == 0
    victim.start(extra_args=["--rejoin"])
    wait_caught_up(c, victim, leader, "--rejoin")
    c.put_label("later", "x")
    written["later"] = "x"
    wait_caught_up(c, victim, leader, "after a new write")
    aside = [n for n in os.listdir(os.path.join(victim.data_dir, "master"))
             if n.startswith("raft.damaged-")]
    assert len(aside) == 1, aside
    check_can_lead_with_everything(c, victim, leader, written)


def test_reset_call_answers(make_cluster):
    """The call an emptied master makes, from outside: token, method, path and names checked;
    a follower redirects to the leader; the leader refuses to reset itself."""
    c = make_cluster(n=3, first_address=1)
    c.start()
    leader = c.wait_leader()
    follower = next(m for m in c.masters if m is not leader)
    url = leader.url(f"/v1/masters/{follower.name}/reset")
    code, _, _ = http_request("POST", url)
    assert code == 401
    code, body, _ = http_request("GET", url, token=c.token)
    assert code == 405, body
    for bad in ("/v1/masters/", "/v1/masters/node2", "/v1/masters/node2/resetx",
                "/v1/masters//reset", "/v1/masters/" + "n" * 300 + "/reset"):
        code, body, _ = http_request("POST", leader.url(bad), token=c.token)
        assert code == 404, (bad, code, body)
    code, body, _ = http_request("POST", leader.url("/v1/masters/stranger/reset"), token=c.token)
    assert (code, body["reset"]) == (200, False), body
    code, body, _ = http_request("POST", leader.url(f"/v1/masters/{leader.name}/reset"),
                                 token=c.token)
    assert code == 409, body
    # Through a follower (redirected): the reset runs, and the cluster converges with the
    # follower a voter again and every label on it.
    c.put_label("x", "1")
    code, body, _ = http_request("POST", follower.url(f"/v1/masters/{follower.name}/reset"),
                                 token=c.token, timeout=5.0)
    assert (code, body["reset"]) == (202, True), body
    deadline = time.monotonic() + BOUND_S
    while "whose log was emptied; adding it back" not in leader.log() or \
            f"Master {follower.name} (raft id {follower.index + 1}) is a voter" not in \
            leader.log().split("adding it back")[-1]:
        assert time.monotonic() < deadline, c.logs()
        time.sleep(0.1)
    c.put_label("y", "2")
    wait_caught_up(c, follower, leader, "after a reset")
    assert c.labels() == {"x": "1", "y": "2"}


def test_late_founder_is_not_reset_and_a_lost_data_dir_rejoins(make_cluster):
    """A founding master that starts for the first time after the others elected has never held
    a log: it is not reset (its journal and the leader's say nothing of it). Once it ran, its
    whole data directory lost (a replaced disk) leaves no trace of that: --rejoin says so, and
    the leader resets it."""
    c = make_cluster(n=3, first_address=1)
    late = c.masters[0]
    for m in c.masters[1:]:
        m.start()
    leader = c.wait_leader()
    written = {}
    for i in range(10):
        c.put_label(f"e{i}", str(i))
        written[f"e{i}"] = str(i)
    late.start()
    wait_caught_up(c, late, leader, "late first start")
    assert "asked the leader to reset" not in late.log(), late.log()
    assert "Could not ask the leader" not in late.log(), late.log()
    assert "its log was emptied" not in leader.log(), leader.log()

    assert late.stop() == 0
    shutil.rmtree(late.data_dir)
    c.put_label("while-away", "1")
    written["while-away"] = "1"
    late.start(extra_args=["--rejoin"])
    wait_caught_up(c, late, leader, "lost data dir, --rejoin")
    assert "asked the leader to reset" in late.log(), late.log()
    assert "Removing raft id 1 from the membership to add it back" in leader.log(), leader.log()
    check_can_lead_with_everything(c, late, leader, written)
