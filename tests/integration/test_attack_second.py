"""A second attacker's look at issue 14's fixes: what test_attack_http.py and test_attack_raft.py
do not try. Redirects that would carry the token off the cluster (other hosts, other ports of a
cluster host, userinfo and IPv6/decimal spellings, an https -> http downgrade), a TLS server
whose certificate names another address, the read token against every write and every call that
costs the cluster work, hostile paging parameters, a body trickled past (and just under) the
request deadline, and what the public calls say to a stranger.

Fake servers are Python threads on 127.0.8.x; the one-node cluster of test_attack_http.py runs on
127.0.6.x. Run inside a private network namespace (COMMON.md).
"""

import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

from test_api_tls import make_certs, tls_node  # noqa: F401  (tls_node: a fixture used below)
from test_attack_http import NODE, READ_TOKEN, TOKEN, OneNode
from weirtest.cluster import http_request
from weirtest.config import Dataset, write_cluster_yaml
from weirtest.net import free_port

BLOCK_BYTES = 1 << 20
FAKE = "127.0.8.1"  # the cluster's only node in the YAML weirctl reads
EVIL = "127.0.8.9"  # no node of the cluster


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP(S) server that records every request's Authorization header and answers with
    REPLY(handler) -> (status, headers, body)."""

    daemon_threads = True

    def __init__(self, host, port, reply, tls=None):
        self.seen = []
        self.reply = reply

        class H(http.server.BaseHTTPRequestHandler):
            def _any(h):
                n = int(h.headers.get("Content-Length") or 0)
                if n:
                    h.rfile.read(n)
                self.seen.append((h.command, h.path, h.headers.get("Authorization")))
                status, headers, body = self.reply(h)
                h.send_response(status)
                for k, v in headers:
                    h.send_header(k, v)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(h, *a):
                pass

        super().__init__((host, port), H)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def tokens(self):
        return [a for _, _, a in self.seen if a]

    def close(self):
        self.shutdown()
        self.server_close()


def ok_json(h):
    return 200, [("Content-Type", "application/json")], b'{"datasets":[]}'


def write_yaml(d, mport, wport, extra=(), host=FAKE):
    with open(os.path.join(d, "token"), "w") as f:
        f.write(TOKEN + "\n")
    return write_cluster_yaml(
        os.path.join(d, "cluster.yaml"), name="redirect", token_file="token",
        cluster_extra="\n".join(extra),
        nodes=[{"name": "node1", "address": host, "raftPort": free_port(host),
                "masterPort": mport, "workerPort": wport, "dataDir": f"{d}/data",
                "runtimeDir": f"{d}/run", "mountRoot": f"{d}/mnt", "roles": ["master", "worker"]}],
        datasets=[Dataset("ds", mounts=[("data", "http://127.0.8.4/data/")], master_replicas=None,
                          tiers=[("MEM", f"{d}/shm", "64Mi")])])


def weirctl(build_dir, yaml_path, *args):
    return subprocess.run([os.path.join(build_dir, "services/ctl/weirctl"), "--config", yaml_path,
                           *args], capture_output=True, text=True, timeout=60)


def test_redirect_never_carries_the_token_off_the_cluster(tmp_path, build_dir):
    """A cluster master (here a fake one, as a compromised or spoofed follower would be) answers
    weirctl with 307 to places outside the cluster, spelled every way a URL parser might be fooled
    with. None of them may receive the token. The control (a redirect to the cluster's worker
    port, trusted by the YAML) must receive it: this proves the recorders would see a leak, so
    the test fails on a client that follows redirects without the origin check."""
    mport, wport, other = free_port(FAKE), free_port(FAKE), free_port(FAKE)
    eport = free_port(EVIL)
    location = {"to": ""}
    servers = []
    try:
        master = Recorder(FAKE, mport, lambda h: (307, [("Location", location["to"])], b"{}"))
        worker = Recorder(FAKE, wport, ok_json)  # a trusted origin: the control
        stray = Recorder(FAKE, other, ok_json)  # a cluster host, a port the YAML does not name
        evil = Recorder(EVIL, eport, ok_json)
        servers = [master, worker, stray, evil]
        y = write_yaml(str(tmp_path), mport, wport)
        evil_dec = int.from_bytes(socket.inet_aton(EVIL), "big")
        hostile = [
            f"http://{EVIL}:{eport}/v1/datasets",
            f"http://{FAKE}:{other}/v1/datasets",
            f"//{EVIL}:{eport}/v1/datasets",
            f"http://{FAKE}:{mport}@{EVIL}:{eport}/v1/datasets",
            f"http://{FAKE}:{wport}@{EVIL}:{eport}/v1/datasets",
            f"http://token:x@{EVIL}:{eport}/v1/datasets",
            f"http://{EVIL}:{eport}#@{FAKE}:{wport}/v1/datasets",
            f"http://{EVIL}:{eport}?@{FAKE}:{wport}/v1/datasets",
            f"http://[::ffff:{EVIL}]:{eport}/v1/datasets",
            f"http://{evil_dec}:{eport}/v1/datasets",
            f"http://{FAKE}.:{other}/v1/datasets",
            f"HTTP://{EVIL.upper()}:{eport}/v1/datasets",
        ]
        for to in hostile:
            location["to"] = to
            out = weirctl(build_dir, y, "datasets")
            assert out.returncode != 0, (to, out.stdout, out.stderr)
            assert evil.tokens() == [] and stray.tokens() == [], (to, evil.seen, stray.seen)
            assert worker.seen == [], (to, worker.seen)
        # same origin and the cluster's own addresses keep the token
        location["to"] = f"http://{FAKE}:{wport}/v1/datasets"
        out = weirctl(build_dir, y, "datasets")
        assert out.returncode == 0, out.stdout + out.stderr
        assert worker.tokens() == [f"Bearer {TOKEN}"], worker.seen
    finally:
        for s in servers:
            s.close()


@pytest.fixture
def tls_files(tmp_path):
    # make_certs names 127.0.7.1 in the server certificate
    return make_certs(str(tmp_path))


def test_tls_hostname_and_no_downgrade(tmp_path, tls_files, build_dir):
    """With api.tls, (1) a server whose certificate is valid (signed by the cluster's CA) but
    names another address gets no request: the client checks the name, not only the chain; (2) a
    307 from an https master to http:// on a cluster address (the worker port of the YAML, which
    the origin check alone trusts) is refused, so the token never crosses the network in clear.
    Before the fix (2) failed: the origin check ignored the scheme and the plain-HTTP recorder
    received the token."""
    ca, cert, key = tls_files
    d = str(tmp_path)
    tls_extra = ["  api: {tls: {certFile: srv.pem, keyFile: srv.key, caFile: ca.pem}}"]
    servers = []
    try:
        # (1) the certificate names 127.0.7.1; the YAML's node is 127.0.8.1
        mport, wport = free_port(FAKE), free_port(FAKE)
        wrong = Recorder(FAKE, mport, ok_json, tls=(cert, key))
        servers.append(wrong)
        y = write_yaml(d, mport, wport, tls_extra)
        out = weirctl(build_dir, y, "datasets")
        assert out.returncode != 0, out.stdout
        assert wrong.seen == [], wrong.seen
        # control: the same server under the name its certificate gives is trusted and served
        tls_node = "127.0.7.1"
        if True:
            mport2, wport2 = free_port(tls_node), free_port(tls_node)
            location = {"to": f"http://{tls_node}:{wport2}/v1/datasets"}
            master = Recorder(tls_node, mport2, lambda h: (307, [("Location", location["to"])],
                                                           b"{}"), tls=(cert, key))
            plain = Recorder(tls_node, wport2, ok_json)
            servers += [master, plain]
            y2 = write_yaml(d, mport2, wport2, tls_extra, host=tls_node)
            # (2) https -> http on a trusted host:port
            out = weirctl(build_dir, y2, "datasets")
            assert master.tokens() != [], master.seen  # TLS to the right name works
            assert plain.tokens() == [], plain.seen
            assert out.returncode != 0, out.stdout
            # control: a redirect that stays on https to the same origin is followed
            location["to"] = f"https://{tls_node}:{mport2}/v1/datasets?x=1"
            master.reply = lambda h: ((307, [("Location", location["to"])], b"{}")
                                      if "x=1" not in h.path else ok_json(h))
            out = weirctl(build_dir, y2, "datasets")
            assert out.returncode == 0, out.stdout + out.stderr
    finally:
        for s in servers:
            s.close()


@pytest.fixture
def node(tmp_path, build_dir):
    n = OneNode(tmp_path, build_dir,
                extra_spec=["  api: {readTokenFile: read-token, requestTimeout: 3s}"])
    try:
        yield n.start()
    finally:
        n.stop()


def raw(port, data, timeout=15, host=NODE):
    """Sends DATA on a fresh connection; returns (status or 0, whole answer)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                got += c
        except (ConnectionResetError, socket.timeout):
            pass
    if not got.startswith(b"HTTP/1."):
        return 0, got
    return int(got.split(b" ", 2)[1]), got


def req(method, target, token=None, body=b"", extra=""):
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Content-Length: {len(body)}"
            f"\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").encode() + body


def test_read_token_writes_nothing_and_costs_nothing(node):
    """Everything a read-token holder (any worker or FUSE node's operator) could try that writes
    or makes the cluster work: every mutating route, with odd method spellings, is 401 and
    nothing changes (labels, applied index, config reloads, syncs, store traffic). Fails if a
    route is registered without its method or the read token is accepted for writes."""
    # the start's own syncs (creation, then the POST that may start a second) settle first
    synced = lambda: http_request("GET", node.master_url("/v1/datasets/ds"), token=TOKEN)[1][
        "synced"]
    prev = None
    for _ in range(30):
        cur = synced()
        if cur == prev:
            break
        prev = cur
        time.sleep(1)
    st0 = http_request("GET", node.master_url("/v1/status"))[1]
    cfg0 = http_request("GET", node.master_url("/v1/config"), token=TOKEN)[1]
    store0 = node.store_requests()
    ds0 = http_request("GET", node.master_url("/v1/datasets/ds"), token=TOKEN)[1]
    m, w = node.master_port, node.worker_port
    attempts = [
        (m, "POST", "/v1/config/reload", b"{}"),
        (m, "POST", "/v1/datasets/ds/sync", b"{}"),
        (m, "PUT", "/v1/datasets/ds/labels/k", b'{"value":"v"}'),
        (m, "DELETE", "/v1/datasets/ds/labels/k", b""),
        (m, "POST", "/v1/masters/node1/reset", b""),
        (m, "POST", "/v1/workers", b'{"node":"node1","api":"127.0.8.9:1","tiers":[],"blocks":[]}'),
        (m, "POST", "/v1/workers/node1/heartbeat", b'{"tiers":[],"added":[],"removed":[]}'),
        (m, "POST", "/v1/fuses/node1/ds/heartbeat", b'{"mountpoint":"/x","files":1}'),
        (m, "post", "/v1/datasets/ds/sync", b"{}"),
        (m, "PATCH", "/v1/datasets/ds/labels/k", b'{"value":"v"}'),
        (m, "GET", "/v1/datasets/ds/sync", b""),  # a GET of a write path does not run it
        (w, "POST", "/v1/load", f'{{"dataset":"ds","paths":["/data/f2.bin"]}}'.encode()),
        (w, "PUT", "/v1/load", b'{"dataset":"ds"}'),
    ]
    for port, method, path, body in attempts:
        code, ans = raw(port, req(method, path, READ_TOKEN, body))
        assert code in (401, 404, 405), (method, path, ans[:300])
        code, ans = raw(port, req(method, path, None, body))
        assert code in (401, 404, 405), (method, path, ans[:300])
    # the write token is accepted on the same calls (the 401s above are the token's doing)
    code, _ = raw(m, req("PUT", "/v1/datasets/ds/labels/k2", TOKEN, b'{"value":"v"}'))
    assert code == 200
    time.sleep(1)
    labels = http_request("GET", node.master_url("/v1/datasets/ds/labels"), token=TOKEN)[1]
    assert labels["labels"] == {"k2": "v"}, labels
    cfg1 = http_request("GET", node.master_url("/v1/config"), token=TOKEN)[1]
    assert cfg1["reloads"] == cfg0["reloads"], (cfg0, cfg1)
    ds1 = http_request("GET", node.master_url("/v1/datasets/ds"), token=TOKEN)[1]
    assert ds1["synced"] == ds0["synced"], (ds0, ds1)
    assert node.store_requests() == store0, "a refused call reached the store"
    st1 = http_request("GET", node.master_url("/v1/status"))[1]
    assert st1["applied"] == st0["applied"] + 1, (st0, st1)  # only the token's label
    workers = http_request("GET", node.master_url("/v1/workers"), token=TOKEN)[1]["workers"]
    assert [x["api"] for x in workers] == [f"{NODE}:{w}"], workers


def test_public_calls_tell_a_stranger_nothing_secret(node):
    """/v1/status and /healthz are public; every other answer a stranger gets is a bare 401.
    None may carry the token, the data directory, the YAML's path or a dataset's store URL."""
    secrets = [TOKEN.encode(), READ_TOKEN.encode(), node.dir.encode(), b"cluster.yaml",
               node.nginx.url.encode(), b"f0.bin"]
    probes = [(node.master_port, "/v1/status"), (node.master_port, "/healthz"),
              (node.worker_port, "/healthz"), (node.master_port, "/v1/config"),
              (node.master_port, "/v1/datasets/ds/ls?path=/data"), (node.master_port, "/nope"),
              (node.master_port, "/v1/datasets/nope/stat?path=/x"), (node.worker_port, "/v1/status"),
              (node.worker_port, "/v1/blocks/1-1-0"), (node.master_port, "/v1/files/1")]
    for port, path in probes:
        for method in ("GET", "HEAD", "POST"):
            code, ans = raw(port, req(method, path, "wrong"))
            assert code in (200, 401, 404, 405), (path, ans[:300])
            for s in secrets:
                assert s not in ans, (method, path, s, ans[:500])
    # the token does see them (this test would notice a leak: the data are there to leak)
    code, ans = raw(node.master_port, req("GET", "/v1/config", TOKEN))
    assert code == 200 and b"cluster.yaml" in ans


def test_hostile_paging_parameters(node):
    """ls/stat with huge, negative, hex, float and overflowing limits, `after` with NUL, invalid
    UTF-8, `..`, slashes, 4096 and 4097 bytes, and paths with `..` and NUL: each is a 400 or 404
    naming the parameter (or a valid page), the master stays up and answers at once, and the
    pages it does give are right. Fails on a crash (connection refused), a stall (timeout), or
    a parameter check that lets an out-of-range limit through."""
    base = "/v1/datasets/ds/ls?path=/data"
    names = sorted(node.files)
    bad_limits = ["0", "-1", "10001", "99999999999999999999999", "0x10", "1e3", "1.5", "",
                  "%20%31", "18446744073709551617"]
    for lim in bad_limits:
        code, ans = raw(node.master_port, req("GET", f"{base}&limit={lim}", READ_TOKEN), timeout=10)
        assert code == 400 and b"limit" in ans, (lim, ans[:300])
    # error messages quote the bad value: invalid UTF-8 in it, or a character cut by the
    # quote's 40-byte bound, must still give the 400 naming the parameter (before the fix:
    # 500 "out of memory", as the JSON encoder refused the message)
    cut = "a" + "%C3%A9" * 25
    for q, what in [("limit=%ff", b"limit"), (f"limit={cut}", b"limit"),
                    ("limit=1&fields=%ff%fe", b"fields"), (f"limit=1&fields={cut}", b"fields")]:
        code, ans = raw(node.master_port, req("GET", f"{base}&{q}", READ_TOKEN))
        assert code == 400 and what in ans, (q, ans[:300])
    code, ans = raw(node.master_port, req("GET", f"{base}&after=f1.bin", READ_TOKEN))
    assert code == 400 and b"after" in ans, ans[:300]
    code, ans = raw(node.master_port, req("GET", f"{base}&limit=1&after={'a' * 4097}", READ_TOKEN))
    assert code == 400 and b"after" in ans, ans[:300]
    # MHD hands over a decoded %00 as the end of the value: "limit=1%00x" read as "1",
    # "path=/data%00/../x" as "/data". Before the fix these were served as the cut value.
    for q in ["limit=1%00", "limit=1&after=f1.bin%00zzz", "limit=1&after=%00", "limit%00x=1",
              "path=/data/f0.bin%00.txt"]:
        code, ans = raw(node.master_port, req("GET", f"/v1/datasets/ds/stat?{q}", READ_TOKEN))
        assert code == 400 and b"NUL" in ans, (q, ans[:300])
    code, ans = raw(node.master_port, req("GET", f"{base}&limit=1%00", "wrong"))
    assert code == 401  # a stranger learns nothing new from it
    odd_after = ["%ff%fe%80", "..", "../..", "%2e%2e%2f%2e%2e%2fetc",
                 "/", "%2F", "a" * 4096, "%0d%0aX-Evil:%201", "f1.bin%2f.."]
    for a in odd_after:
        code, ans = raw(node.master_port, req("GET", f"{base}&limit=2&after={a}", READ_TOKEN),
                        timeout=10)
        assert code in (200, 400), (a, ans[:300])
        assert b"X-Evil" not in ans.split(b"\r\n\r\n")[0], ans[:300]
    for p in ["/data/../../etc", "/data/%2e%2e", "/../data", "//data", "/data/", "/" + "x/" * 2000]:
        for verb in ("ls", "stat"):
            code, ans = raw(node.master_port, req(
                "GET", f"/v1/datasets/ds/{verb}?path={p}&limit=3", READ_TOKEN), timeout=10)
            assert code in (200, 400, 404), (verb, p, ans[:300])
            assert b"root:" not in ans
    # still serving, and paging is right after all that
    t = time.monotonic()
    code, body, _ = http_request("GET", node.master_url(f"{base}&limit=1&after={names[1]}"),
                                 token=READ_TOKEN)
    assert code == 200 and [e["name"] for e in body["entries"]] == [names[2]], body
    assert body.get("next") == names[2]
    code, body, _ = http_request("GET", node.master_url(f"{base}&limit=10000&after={names[-1]}"),
                                 token=READ_TOKEN)
    assert code == 200 and body["entries"] == [] and "next" not in body, body
    assert time.monotonic() - t < 5


def trickle(port, head, body, period, timeout=30):
    """Sends HEAD at once and BODY one byte every PERIOD s; returns (status or 0, seconds until
    the server answered or closed)."""
    t0 = time.monotonic()
    with socket.create_connection((NODE, port), timeout=timeout) as s:
        s.sendall(head)
        try:
            for b in body:
                time.sleep(period)
                s.sendall(bytes([b]))
            got = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                got += c
                if b"\r\n\r\n" in got:
                    break
        except (BrokenPipeError, ConnectionResetError):
            got = b""
    status = int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.") else 0
    return status, time.monotonic() - t0


def send_or_closed(s, data):
    """Sends DATA; False once the server closed (a reset, or EOF seen on a peek)."""
    try:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                return False
        except BlockingIOError:
            pass
        finally:
            s.setblocking(True)
        s.sendall(data)
        return True
    except OSError:
        return False


def test_trickled_body_cut_at_the_deadline_and_served_just_under(node):
    """requestTimeout is 3 s here. A label body trickled at 1 byte per 0.5 s (20 bytes, 10 s)
    with the write token is cut near 3 s and not applied; the same body in 8 bytes over ~1.6 s
    is applied. Fails if the deadline covers only the header (then the slow write completes
    after 10 s) or is an idle timeout (every gap is 0.5 s)."""
    body = b'{"value":"slowslow"}'
    assert len(body) == 20
    path = "/v1/datasets/ds/labels/slow"
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    status, secs = trickle(node.master_port, head, body, 0.5)
    assert status != 200 and secs < 8, (status, secs)
    labels = http_request("GET", node.master_url("/v1/datasets/ds/labels"), token=TOKEN)[1]
    assert "slow" not in labels["labels"], labels
    # the same with a chunked body, one byte a chunk
    chead = head.replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
    chunks = b"".join(b"1\r\n" + bytes([c]) + b"\r\n" for c in body) + b"0\r\n\r\n"
    t0 = time.monotonic()
    with socket.create_connection((NODE, node.master_port), timeout=15) as s:
        s.sendall(chead)
        closed = False
        for i in range(0, len(chunks), 6):
            time.sleep(0.5)
            if not send_or_closed(s, chunks[i:i + 6]):
                closed = True
                break
        secs = time.monotonic() - t0
    assert closed and secs < 8, (closed, secs)
    labels = http_request("GET", node.master_url("/v1/datasets/ds/labels"), token=TOKEN)[1]
    assert "slow" not in labels["labels"], labels
    body2 = b'{"value":"ok"}'
    head2 = head.replace(f"Content-Length: {len(body)}".encode(),
                         f"Content-Length: {len(body2)}".encode())
    status, secs = trickle(node.master_port, head2, body2, 0.12)
    assert status == 200, (status, secs)
    labels = http_request("GET", node.master_url("/v1/datasets/ds/labels"), token=TOKEN)[1]
    assert labels["labels"].get("slow") == "ok", labels


def test_many_requests_on_one_keepalive_connection(node):
    """2,000 requests pipelined on one connection, each answered; the deadline restarts at each
    answer, so a busy client is not cut, and the master serves others meanwhile."""
    n = 2000
    one = (f"GET /v1/datasets/ds/labels HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {READ_TOKEN}\r\n\r\n").encode()
    with socket.create_connection((NODE, node.master_port), timeout=30) as s:
        got = b""
        sent = 0
        while sent < n:
            s.sendall(one * 50)
            sent += 50
            while got.count(b"HTTP/1.1 200") < sent:
                c = s.recv(1 << 20)
                assert c, f"closed after {got.count(b'HTTP/1.1 200')} answers"
                got += c
            assert raw(node.master_port, req("GET", "/healthz"), timeout=5)[0] == 200
    assert got.count(b"HTTP/1.1 200") == n


def test_wrong_mac_flood_from_masters_addresses_starves_no_one(cluster3):
    """A host that can send from the masters' own addresses (a listed address, so not cut at
    accept) but lacks the secret: 16 threads run valid HELLOs with a wrong PROOF as fast as they
    can, from the follower's address to the leader and from the leader's address to the
    follower, while the follower is killed and restarted. The real follower must still connect
    both ways (it catches up), the leader stays leader, the label writes go through, and the
    refusals are rate-limited in the journal. Fails if a refused handshake held a slot past its
    answer or if the per-address limit dropped real masters' handshakes under the flood."""
    from test_attack_raft import RAFT_PORT, follower_of, raft_address, raft_id
    from weirtest import raftwire

    leader = cluster3.wait_leader()
    follower = follower_of(cluster3, leader)
    stop = threading.Event()
    counts = {"challenged": 0}
    lock = threading.Lock()

    def flood(src, dst):
        while not stop.is_set():
            try:
                s = raftwire.connect(dst.address, RAFT_PORT, source=src.address, timeout=1.0)
            except OSError:
                time.sleep(0.01)
                continue
            try:
                s.sendall(raftwire.hello(raft_id(src), raft_id(dst), raft_address(src)))
                chal = raftwire.recv_exact(s, raftwire.CHALLENGE_BYTES, timeout=1.0)
                if len(chal) == raftwire.CHALLENGE_BYTES:
                    with lock:
                        counts["challenged"] += 1
                    s.sendall(raftwire.header(raftwire.PROOF) + os.urandom(32))
                    raftwire.recv_exact(s, raftwire.ACCEPT_BYTES, timeout=1.0)
            except OSError:
                pass
            finally:
                s.close()

    log_before = len(leader.log())
    threads = [threading.Thread(target=flood, args=(follower, leader)) for _ in range(8)] + \
              [threading.Thread(target=flood, args=(leader, follower)) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        follower.kill()
        cluster3.put_label("flood1", "1")
        follower.start()
        cluster3.put_label("flood2", "2")
        target = leader.status()["applied"]
        caught_up = raftwire.wait_until(
            lambda: (follower.status() or {}).get("applied", 0) >= target, 20.0)
        assert caught_up, (follower.status(), follower.log()[-2000:])
        assert cluster3.wait_leader() is leader
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert counts["challenged"] > 100, counts  # the flood really reached the MAC check
    refusals = leader.log()[log_before:].count("wrong cluster secret")
    assert 1 <= refusals <= 40, refusals


@pytest.fixture
def small_node(tmp_path, build_dir):
    n = OneNode(tmp_path, build_dir, extra_spec=[
        "  api: {readTokenFile: read-token, requestTimeout: 3s, maxConnections: 16, "
        "maxConnectionsPerClient: 8}"])
    try:
        yield n.start()
    finally:
        n.stop()


def test_slow_readers_do_not_lock_out_healthz(small_node):
    """Slow-read: 32 connections from 4 addresses (8 each, the per-client limit) each ask a
    cached 1 MiB block with the read token and then read it at a trickle (a tiny receive
    buffer, 4 KiB every 2 s: never idle long enough for the idle timeout). Every slot is then
    'being answered', which the request deadline does not cover. /healthz from another address
    must still be served. Before the fix a full table of answering connections refused every new
    one, so /healthz failed for as long as the readers trickled."""
    node = small_node
    bid = f"{node.block_prefix('f0.bin')}-0"
    code, body, _ = http_request("GET", node.worker_url(f"/v1/blocks/{bid}"), token=READ_TOKEN,
                                 timeout=10)
    assert code == 200, body
    stop = threading.Event()
    socks = []
    request = (f"GET /v1/blocks/{bid} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {READ_TOKEN}\r\n\r\n").encode()

    def reader(src):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            s.bind((src, 0))
            s.settimeout(5)
            s.connect((NODE, node.worker_port))
            socks.append(s)
            s.sendall(request * 12)  # 12 MiB: more than the kernel buffers take
            while not stop.wait(2.0):
                s.recv(4096)
        except OSError:
            pass

    threads = [threading.Thread(target=reader, args=(f"127.0.6.{10 + i // 8}",))
               for i in range(32)]
    for t in threads:
        t.start()
    try:
        time.sleep(4.0)  # past the 3 s request deadline: only answering connections remain
        ok = 0
        for _ in range(8):
            try:
                code, _ = raw(node.worker_port, req("GET", "/healthz"), timeout=3)
                ok += code == 200
            except OSError:
                pass
            time.sleep(0.5)
        assert ok >= 6, f"/healthz answered {ok} of 8 times under slow readers"
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in socks:
            s.close()


def client_hello():
    """The first flight of a real TLS client, as bytes to trickle."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="x")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_tls_handshake_trickled_is_cut_at_the_deadline(tls_node):
    """A stranger trickles a real ClientHello into the TLS API, one byte a second (never idle
    for the 10 s idle timeout): the request deadline (10 s, from the connection's start) must
    cover the TLS handshake too, so the connection is closed by ~10 s, not after the 200+ s the
    ClientHello would take. Meanwhile a real client is served."""
    env = tls_node
    hello = client_hello()
    assert len(hello) > 100
    t0 = time.monotonic()
    closed_after = None
    with socket.create_connection(("127.0.7.1", env.mport), timeout=5) as s:
        for b in hello:
            try:
                s.sendall(bytes([b]))
                s.settimeout(1.0)
                if s.recv(1) == b"":
                    closed_after = time.monotonic() - t0
                    break
            except socket.timeout:
                pass
            except OSError:
                closed_after = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 30:
                break
    # not before the deadline (the bytes are a valid beginning), and not much after it
    assert closed_after is not None and 8 < closed_after < 16, closed_after
    ctx = ssl.create_default_context(cafile=env.ca)
    with socket.create_connection(("127.0.7.1", env.mport), timeout=5) as raw_s:
        with ctx.wrap_socket(raw_s, server_hostname="127.0.7.1") as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_masters_view_with_a_hung_peer_does_not_stall_the_api(cluster3):
    """A master that is stopped (SIGSTOP, or partitioned) still accepts TCP on its API port but
    never answers, so every `GET /v1/masters` waits the peer probe's timeout (500 ms). A
    read-token holder (or a dashboard) sending 32 of them at once must not stall the leader's
    API: /healthz and a label write stay fast. Fails if the probes run on the HTTP threads
    (4 of them, each serving many connections), which then queue every other request behind
    the 500 ms waits."""
    import signal
    from test_attack_raft import follower_of
    from weirtest.cluster import TOKEN as CTOKEN

    leader = cluster3.wait_leader()
    hung = follower_of(cluster3, leader)
    hung.signal(signal.SIGSTOP)
    stop = threading.Event()
    done = {"n": 0}

    def hammer():
        while not stop.is_set():
            try:
                http_request("GET", leader.url("/v1/masters"), token=CTOKEN, timeout=10)
                done["n"] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(32)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        worst = 0.0
        for i in range(6):
            t0 = time.monotonic()
            code, _, _ = http_request("GET", leader.url("/healthz"), timeout=20)
            worst = max(worst, time.monotonic() - t0)
            assert code == 200
            t0 = time.monotonic()
            code, body, _ = http_request("PUT", leader.url(f"/v1/datasets/demo/labels/hung{i}"),
                                         body={"value": "1"}, token=CTOKEN, timeout=20)
            assert code == 200, body
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.3)
        assert done["n"] > 32, done  # the probes really ran meanwhile
        assert worst < 1.5, f"a request took {worst:.2f}s while /v1/masters waited on a hung peer"
    finally:
        stop.set()
        for t in threads:
            t.join()
        hung.signal(signal.SIGCONT)


def test_follower_redirect_cannot_be_steered(cluster3):
    """A follower's 307 copies the request's path and query into Location. With CR LF, `@`,
    `//HOST`, `%2F..` and a backslash in them, Location must still name the leader's API (host
    and port), on one header line, with nothing injected. Fails if the target is copied without
    percent-encoding: CR LF would split the header (or make the reply a 500) and `@`/`//` would
    move the authority."""
    from test_attack_raft import follower_of
    from weirtest.cluster import TOKEN as CTOKEN

    leader = cluster3.wait_leader()
    follower = follower_of(cluster3, leader)
    host, port = follower.api.rsplit(":", 1)
    lhost, lport = leader.api.rsplit(":", 1)
    targets = ["/v1/datasets/demo%0d%0aX-Evil:%201/labels",
               "/v1/datasets/@127.0.8.9:80/labels",
               "/v1/datasets//127.0.8.9/labels",
               "/v1/datasets/demo/labels?x=%0d%0aX-Evil:%201&y=@127.0.8.9",
               "/v1/datasets/..%2F..%2F@127.0.8.9/labels",
               "/v1/datasets/demo\\@127.0.8.9/labels"]
    for t in targets:
        code, ans = raw(int(port), req("GET", t, CTOKEN), host=host)
        head = ans.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert code == 307, (t, head)
        assert "X-Evil" not in head.split("\r\n", 1)[1].replace("%0D%0AX-Evil", ""), head
        loc = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
               if line.lower().startswith("location:")]
        assert len(loc) == 1, head
        u = urllib.parse.urlsplit(loc[0])
        assert (u.hostname, str(u.port), u.username) == (lhost, lport, None), (t, loc)
