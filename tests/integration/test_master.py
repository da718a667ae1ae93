"""weir-master on loopback (127.0.1.x): elections, failover, durability, API limits, D-Bus.

Run: WEIR_BUILD_DIR=build /usr/bin/python3 -m pytest -q tests/integration/test_master.py
"""

import glob
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import weir_binary
from weirtest.cluster import http_request

# Generous bounds: the suite runs on loaded CI machines next to other tests.
FAILOVER_BOUND_S = 10.0




def test_three_masters_elect_one_leader(cluster3):
    sts = cluster3.statuses()
    roles = sorted(s["role"] for s in sts.values())
    assert roles == ["follower", "follower", "leader"], sts
    leader = cluster3.wait_leader()
    assert {s["leader"] for s in sts.values()} == {leader.name}

    out = cluster3.weirctl("masters")
    assert out.returncode == 0, out.stderr
    assert f"Current leader master: {leader.name}:19998" in out.stdout
    assert "All masters: [node1:19998, node2:19998, node3:19998]" in out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("node")]
    assert sorted(r[2] for r in rows) == ["follower", "follower", "leader"], out.stdout
    assert all(r[5] == "ok" for r in rows), out.stdout

    js = cluster3.weirctl("masters", "--json")
    assert js.returncode == 0
    assert f'"leader": "{leader.name}"' in js.stdout


def test_healthz_metrics_status(cluster3):
    leader = cluster3.wait_leader()
    code, body, _ = http_request("GET", leader.url("/healthz"))
    assert (code, body) == (200, {"status": "ok"})
    cluster3.put_label("m", "1")
    code, text, _ = http_request("GET", leader.url("/metrics"), token=cluster3.token)
    assert code == 200
    assert "weir_master_role 3" in text
    for name in ("weir_master_term", "weir_master_leader_changes_total",
                 "weir_master_applied_index", 'weir_http_requests_total{code="200"}',
                 "weir_http_request_seconds_bucket"):
        assert name in text, text


def test_leader_failover_and_rejoin(cluster3):
    written = {}
    for i in range(20):
        cluster3.put_label(f"before{i}", str(i))
        written[f"before{i}"] = str(i)
    old = cluster3.wait_leader()
    old.kill()

    new = cluster3.wait_leader(timeout=FAILOVER_BOUND_S)
    assert new is not old
    _, took = cluster3.put_label("after", "x", deadline_s=FAILOVER_BOUND_S)
    written["after"] = "x"

    old.start()
    # The restarted node follows the new leader and catches up with its applied index.
    deadline = time.monotonic() + FAILOVER_BOUND_S
    while time.monotonic() < deadline:
        s, ls = old.status(), new.status()
        if s and ls and s["role"] == "follower" and s["leader"] == new.name and \
                s["applied"] >= ls["applied"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"{old.name} did not rejoin: {old.status()} vs {new.status()}")
    assert cluster3.wait_leader() is new
    labels = cluster3.labels()
    for k, v in written.items():
        assert labels.get(k) == v, (k, labels)


def test_ten_kill_restart_rounds(cluster3):
    written = {}
    for rnd in range(10):
        leader = cluster3.wait_leader(timeout=FAILOVER_BOUND_S)
        cluster3.put_label(f"r{rnd}a", "1")
        written[f"r{rnd}a"] = "1"
        leader.kill()
        cluster3.put_label(f"r{rnd}b", "2", deadline_s=FAILOVER_BOUND_S)
        written[f"r{rnd}b"] = "2"
        leader.start()
        new = cluster3.wait_leader(timeout=FAILOVER_BOUND_S)
        assert len(cluster3.leaders()) == 1
        assert new.running
    labels = cluster3.labels()
    missing = {k: v for k, v in written.items() if labels.get(k) != v}
    assert not missing, missing


def test_whole_cluster_restart_keeps_state(make_cluster):
    c = make_cluster(n=3, first_address=1, snapshot_threshold=16)
    c.start()
    c.wait_leader()
    written = {}
    for i in range(60):
        c.put_label(f"k{i}", f"v{i}")
        written[f"k{i}"] = f"v{i}"
    c.request("DELETE", "/v1/datasets/demo/labels/k0")
    del written["k0"]
    time.sleep(0.5)
    # Snapshots were taken (threshold 16) and the log after them is kept.
    snaps = [p for m in c.masters for p in glob.glob(os.path.join(m.data_dir, "master/raft/snapshot-*"))]
    assert snaps, "no snapshot files were written"

    assert c.stop() == [0, 0, 0], c.logs()
    c.start()
    c.wait_leader()
    assert c.labels() == written
    # The state came back through the snapshot (restore) plus the log after it.
    assert any("Restored a snapshot" in m.log() for m in c.masters), c.logs()
    # And writes continue after the restart.
    index, _ = c.put_label("later", "x")
    assert index > 60


def test_follower_redirects_and_503(cluster3):
    leader = cluster3.wait_leader()
    follower = next(m for m in cluster3.masters if m is not leader)
    code, body, headers = http_request("GET", follower.url("/v1/datasets?x=1"), max_redirects=0,
                                       token=cluster3.token)
    assert code == 307, body
    assert headers["location"] == f"http://{leader.api}/v1/datasets?x=1"
    # Followed, it reaches the leader.
    code, body, _ = http_request("GET", follower.url("/v1/datasets"), token=cluster3.token)
    assert code == 200 and body["datasets"][0]["name"] == "demo"
    # /v1/status is answered locally.
    code, body, _ = http_request("GET", follower.url("/v1/status"), max_redirects=0)
    assert code == 200 and body["node"] == follower.name

    # Without a quorum there is no leader: the survivor answers 503 with Retry-After.
    others = [m for m in cluster3.masters if m is not follower]
    for m in others:
        m.kill()
    deadline = time.monotonic() + FAILOVER_BOUND_S
    while time.monotonic() < deadline:
        code, body, headers = http_request("GET", follower.url("/v1/datasets"), max_redirects=0,
                                           token=cluster3.token)
        if code == 503:
            break
        time.sleep(0.1)
    assert code == 503, (code, body)
    assert headers.get("retry-after") == "1"


def test_token_required_for_writes(cluster3):
    leader = cluster3.wait_leader()
    url = leader.url("/v1/datasets/demo/labels/t")
    code, body, _ = http_request("PUT", url, body={"value": "x"})
    assert code == 401 and "token" in body["error"]
    code, _, _ = http_request("PUT", url, body={"value": "x"}, token="wrong")
    assert code == 401
    code, _, _ = http_request("PUT", url, body={"value": "x"}, token=cluster3.token)
    assert code == 200
    # Reads need it too (docs/api.md): only /healthz and /v1/status are public.
    code, body, _ = http_request("GET", leader.url("/v1/datasets/demo/labels"))
    assert code == 401
    code, body, _ = http_request("GET", leader.url("/v1/datasets/demo/labels"),
                                 token=cluster3.token)
    assert code == 200 and body["labels"]["t"] == "x"


def _raw(addr, data, timeout=5.0):
    s = socket.create_connection((addr, 19998), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


def test_malformed_oversized_and_slow_requests(cluster3):
    leader = cluster3.wait_leader()
    url = leader.url("/v1/datasets/demo/labels/bad")
    tok = cluster3.token

    code, body, _ = http_request("PUT", url, body=b'{"value":', token=tok)
    assert code == 400 and "invalid JSON" in body["error"], body
    code, body, _ = http_request("PUT", url, body=b'[1,2]', token=tok)
    assert code == 400
    code, body, _ = http_request("PUT", url, body={"value": 5}, token=tok)
    assert code == 400

    code, body, _ = http_request("PUT", url, body=b"x" * (2 << 20), token=tok, timeout=10)
    assert code == 413, body
    reply = _raw(leader.address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 +
                 b"\r\n\r\n")
    status = int(reply.split()[1])
    assert 400 <= status < 500, reply[:200]

    # Slow loris: partial headers, never finished. Others are still served at once, and the
    # server drops the idle connection after its timeout (10 s).
    slow = []
    for _ in range(20):
        s = socket.create_connection((leader.address, 19998), timeout=30)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    t0 = time.monotonic()
    code, body, _ = http_request("GET", leader.url("/healthz"), timeout=2)
    assert code == 200 and time.monotonic() - t0 < 1.0
    cluster3.put_label("during-slowloris", "ok")
    try:
        slow[0].settimeout(20)
        data = slow[0].recv(100)
        assert time.monotonic() - t0 < 20
        assert data == b"" or data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 5")
    finally:
        for s in slow:
            s.close()


def test_single_master(make_cluster):
    c = make_cluster(n=1, first_address=21)
    c.start()
    leader = c.wait_leader()
    assert leader.name == "node1"
    index, took = c.put_label("solo", "1")
    assert c.labels()["solo"] == "1"
    out = c.weirctl("masters")
    assert "Current leader master: node1:19998" in out.stdout, out.stdout
    # Durable: a restart keeps the write.
    assert leader.stop() == 0
    leader.start()
    c.wait_leader()
    assert c.labels()["solo"] == "1"


def test_five_masters(make_cluster):
    c = make_cluster(n=5, first_address=11)
    c.start()
    leader = c.wait_leader()
    assert len(c.leaders()) == 1
    c.put_label("five", "1")
    leader.kill()
    c.put_label("five-after", "2", deadline_s=FAILOVER_BOUND_S)
    second = c.wait_leader(timeout=FAILOVER_BOUND_S)
    second.kill()  # 3 of 5 left: still a quorum
    c.put_label("five-after2", "3", deadline_s=FAILOVER_BOUND_S)
    labels = c.labels()
    assert labels["five"] == "1" and labels["five-after"] == "2" and labels["five-after2"] == "3"


@pytest.mark.parametrize("replicas", [2, 4])
def test_even_master_replicas_refused(make_cluster, replicas):
    c = make_cluster(n=5, first_address=11, master_replicas=replicas)
    out = subprocess.run([c.binary, "--config", c.yaml_path, "--node", "node1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode != 0
    assert "replicas" in out.stderr and "odd" in out.stderr, out.stderr


def test_node_without_master_refused(make_cluster):
    c = make_cluster(n=3, first_address=1, master_replicas=1)
    out = subprocess.run([c.binary, "--config", c.yaml_path, "--node", "node2"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "the masters are: node1" in out.stderr, out.stderr


def test_second_instance_on_same_dir_refused(make_cluster):
    c = make_cluster(n=1, first_address=21)
    c.start()
    c.wait_leader()
    out = subprocess.run([c.binary, "--config", c.yaml_path, "--node", "node1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "already using" in out.stderr, out.stderr
    assert c.masters[0].running


def test_missing_token_file(make_cluster):
    c = make_cluster(n=1, first_address=21)
    os.unlink(os.path.join(c.dir, "token"))
    out = subprocess.run([c.binary, "--config", c.yaml_path, "--node", "node1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "token" in out.stderr, out.stderr


def test_sigterm_clean_exit(cluster3):
    for m in cluster3.masters:
        assert m.stop() == 0, m.log()
        assert "Stopped." in m.log()


def test_dbus_properties(make_cluster, private_bus):
    c = make_cluster(n=1, first_address=21, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus})
    c.start()
    c.wait_leader()

    def prop(name):
        out = subprocess.run(["busctl", f"--address={private_bus}", "get-property",
                              "io.weir.Master1", "/io/weir/Master1", "io.weir.Master1", name],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    deadline = time.monotonic() + 5
    while prop("Role") != 's "leader"' and time.monotonic() < deadline:
        time.sleep(0.1)
    assert prop("Role") == 's "leader"'
    assert prop("Leader") == 's "node1"'
    assert prop("Term").startswith("t ") and int(prop("Term").split()[1]) >= 1
    assert prop("Masters") == 'a(ss) 1 "node1" "127.0.1.21:19998"'

    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=private_bus)
    out = subprocess.run([c.weirctl_path, "--config", c.yaml_path, "status"], capture_output=True,
                         text=True, timeout=10, env=env)
    assert out.returncode == 0, out.stderr
    assert "Role" in out.stdout and "leader" in out.stdout
    assert "worker: not running" in out.stdout


def test_sd_notify_ready_status_watchdog_stopping(make_cluster, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    c = make_cluster(n=1, first_address=21,
                     env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "200000"})
    m = c.masters[0]
    # Master.start() drops an inherited NOTIFY_SOCKET; the cluster env puts this one back.
    m.start()
    messages = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                messages += sock.recv(4096).decode().split("\n")
            except socket.timeout:
                pass
            if "READY=1" in messages and messages.count("WATCHDOG=1") >= 2:
                break
        assert "READY=1" in messages, messages
        assert "STATUS=leader, term 1, 1/1 masters" in messages, messages
        assert messages.count("WATCHDOG=1") >= 2, messages
        assert m.stop() == 0
        try:
            while True:
                messages += sock.recv(4096).decode().split("\n")
        except socket.timeout:
            pass
        assert "STOPPING=1" in messages, messages
    finally:
        sock.close()


def test_dbus_transfer_leadership(make_cluster, private_bus):
    c = make_cluster(n=3, first_address=1, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus})

    def busctl(*args):
        return subprocess.run(["busctl", f"--address={private_bus}", *args],
                              capture_output=True, text=True, timeout=10)

    # node1 takes the bus name io.weir.Master1 before the others start.
    c.masters[0].start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        owner = busctl("get-property", "io.weir.Master1", "/io/weir/Master1", "io.weir.Master1",
                       "Node")
        if owner.returncode == 0:
            break
        time.sleep(0.05)
    c.masters[1].start()
    c.masters[2].start()
    assert owner.stdout.strip() == 's "node1"', owner
    node1 = c.masters[0]
    # Make node1 the leader (kill whoever else leads; at most a few rounds).
    for _ in range(10):
        leader = c.wait_leader(timeout=FAILOVER_BOUND_S)
        if leader is node1:
            break
        out = busctl("call", "io.weir.Master1", "/io/weir/Master1", "io.weir.Master1",
                     "TransferLeadership", "s", "node2")
        assert out.returncode != 0 and "not the leader" in out.stderr, out
        leader.kill()
        c.wait_leader(timeout=FAILOVER_BOUND_S, exclude=leader)
        leader.start()
    assert c.wait_leader() is node1

    out = busctl("call", "io.weir.Master1", "/io/weir/Master1", "io.weir.Master1",
                 "TransferLeadership", "s", "node3")
    assert out.returncode == 0, out.stderr
    deadline = time.monotonic() + FAILOVER_BOUND_S
    while time.monotonic() < deadline and c.wait_leader().name != "node3":
        time.sleep(0.05)
    assert c.wait_leader().name == "node3"
    c.put_label("after-transfer", "1")


def test_lagging_follower_catches_up_from_snapshot(make_cluster):
    c = make_cluster(n=3, first_address=1, snapshot_threshold=16)
    c.start()
    leader = c.wait_leader()
    lagging = next(m for m in c.masters if m is not leader)
    lagging.kill()
    written = {}
    for i in range(80):
        c.put_label(f"s{i}", str(i))
        written[f"s{i}"] = str(i)
    lagging.start()
    # The leader's log no longer holds what the lagging node misses: it gets a snapshot.
    deadline = time.monotonic() + FAILOVER_BOUND_S
    while time.monotonic() < deadline:
        s, ls = lagging.status(), leader.status()
        if s and ls and s["leader"] == leader.name and s["applied"] >= ls["applied"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"{lagging.name} did not catch up\n{c.logs()}")
    assert "Restored a snapshot" in lagging.log(), lagging.log()
    # It can lead with the full state.
    leader.kill()
    c.wait_leader(timeout=FAILOVER_BOUND_S)
    assert c.labels() == written


def test_data_dir_option_and_help(make_cluster, tmp_path):
    c = make_cluster(n=1, first_address=21)
    m = c.masters[0]
    other = tmp_path / "elsewhere"
    m.start(extra_args=["--data-dir", str(other)])
    c.wait_leader()
    c.put_label("dd", "1")
    assert (other / "raft").is_dir() and (other / "lock").is_file()
    assert not os.path.exists(os.path.join(m.data_dir, "master"))
    out = subprocess.run([c.binary, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--node NAME" in out.stdout
    out = subprocess.run([c.binary, "--version"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("weir-master ")
    # $WEIR_CONFIG stands in for --config.
    env = dict(os.environ, WEIR_CONFIG=c.yaml_path)
    out = subprocess.run([c.binary, "--node", "nosuch"], capture_output=True, text=True,
                         timeout=10, env=env)
    assert out.returncode == 1 and "nosuch" in out.stderr and c.yaml_path in out.stderr


def test_masters_with_hung_and_dead_peers(cluster3):
    leader = cluster3.wait_leader()
    hung, dead = [m for m in cluster3.masters if m is not leader]
    dead.kill()
    hung.signal(signal.SIGSTOP)
    try:
        # Peer answers may come from a probe round that began before the SIGSTOP (they are at
        # most a few seconds old, docs/api.md): ask until the hung peer shows, each call quick.
        want = {leader.name: True, hung.name: False, dead.name: False}
        deadline = time.monotonic() + 8.0
        while True:
            t0 = time.monotonic()
            code, body, _ = http_request("GET", leader.url("/v1/masters"), timeout=5,
                                         token=cluster3.token)
            took = time.monotonic() - t0
            assert code == 200
            assert took < 2.0, took  # one 500 ms timeout for the hung peer
            reach = {e["node"]: e["reachable"] for e in body["masters"]}
            if reach == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert reach == want, body
        # (Without a quorum the leader may already have stepped down: "leader" is not checked.)
        out = cluster3.weirctl("masters")
        assert out.returncode == 0 and "unreachable" in out.stdout, out.stdout
    finally:
        hung.signal(signal.SIGCONT)
