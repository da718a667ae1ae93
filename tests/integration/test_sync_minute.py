"""Syncs from nginx's HTML index, whose times show the minute only (docs/stores.md, "Listings with
times to the minute"): files whose minute had ended when the store listed them are taken from
the listing without a HEAD, on the first sync and on re-syncs; a file written in the minute of a
sync, dated in the future, or listed in local time is HEADed; a rewrite with the same size
within the minute of a sync is still found by the next sync; a listing without a Date header
(behind a proxy that drops it) has every file HEADed; a worker fills a minute version; a demo
cluster serves such files through weir-fuse and never mixes a rewritten one.

Requests are counted in nginx's access log (method and path of each)."""

import errno
import os
import shutil
import tempfile
import time

import pytest

from conftest import weir_binary
from weirtest import stores

ADDR = "127.0.3.20"
N_DIRS, PER_DIR = 4, 50
LISTERS = 8  # SYNC_LIST_THREADS: each checks the first file it takes from a page with a HEAD
OLD = 3 * 3600  # seconds: the dataset's files were written this long ago


@pytest.fixture
def build_dir():
    weir_binary("weir-master")
    from conftest import BUILD_DIR
    return BUILD_DIR


@pytest.fixture
def store_root():
    root = tempfile.mkdtemp(prefix="weir-minute-", dir="/tmp")
    os.chmod(root, 0o755)
    data = os.path.join(root, "data")
    files = {}
    old = time.time() - OLD
    for d in range(N_DIRS):
        os.makedirs(os.path.join(data, f"d{d}"))
        for i in range(PER_DIR):
            rel = f"d{d}/f{i:03d}.bin"
            with open(os.path.join(data, rel), "wb") as f:
                f.write(bytes([i % 251]) * (100 + i))
            os.utime(os.path.join(data, rel), (old, old - i * 7))
            files[rel] = 100 + i
    stores.make_world_readable(data)
    yield data, files
    shutil.rmtree(root, ignore_errors=True)


def start_nginx(root, workdir, **kw):
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (Debian: nginx)")
    return stores.Nginx(root, ADDR, workdir, log_format="bytes", **kw).start()


def heads(nginx, since=0):
    """The paths HEADed since request number SINCE, and the number of requests now."""
    reqs = nginx.requests()
    return [uri for method, uri, *_ in reqs[since:] if method == "HEAD"], len(reqs)


def resync(sc, name="m"):
    before = sc.dataset(name)["synced"]
    code, body, _ = sc.c.request("POST", f"/v1/datasets/{name}/sync", body={})
    assert code in (200, 202), body
    return sc.wait_dataset(name, lambda d: d["synced"] and d["synced"] != before
                           and d["sync_error"] is None)


def cluster(tmp_path, build_dir, url):
    return stores.SyncCluster(tmp_path / "masters", build_dir,
                              {"m": {"mounts": [("web", url, {})]}}, first=21)


def test_old_files_are_not_headed(store_root, tmp_path, build_dir):
    data, files = store_root
    nginx = start_nginx(data, str(tmp_path / "nginx"))
    try:
        with cluster(tmp_path, build_dir, nginx.url) as sc:
            sc.wait_leader()
            d = sc.wait_dataset("m", lambda d: d["phase"] == "Bound")
            assert d["total_files"] == len(files)
            got, n = heads(nginx)
            # at most the lister threads' check of the page's minutes, none per file
            assert len(got) <= LISTERS < len(files), got
            tree, _ = sc.tree("m")
            assert {p[len("/web/"):]: e["size"] for p, e in tree.items()} == files
            headed = {u.lstrip("/") for u in got}
            for p, e in tree.items():
                rel = p[len("/web/"):]
                st = os.stat(os.path.join(data, rel))
                if rel in headed:
                    assert e["mtime"] == int(st.st_mtime) and e["etag"].startswith('"'), e
                else:
                    # the listed minute, marked as such (reads accept any second of it)
                    assert e["etag"] == "weir:minute", e
                    assert e["mtime"] == int(st.st_mtime) // 60 * 60, e
                assert e["version"] == 1

            # unchanged re-syncs: no HEAD at all, and no version moves
            for _ in range(2):
                resync(sc)
                got, n = heads(nginx, n)
                assert got == [], got
                again, _ = sc.tree("m")
                assert {p: (e["version"], e["etag"], e["mtime"]) for p, e in again.items()} == \
                    {p: (e["version"], e["etag"], e["mtime"]) for p, e in tree.items()}
    finally:
        nginx.stop()


def test_recent_and_future_files_are_headed(store_root, tmp_path, build_dir):
    """A file dated in the future (its minute has not ended on the store's clock) and one
    written just now are HEADed and carry the store's ETag."""
    data, files = store_root
    future = os.path.join(data, "d0", "future.bin")
    with open(future, "wb") as f:
        f.write(b"f" * 333)
    t = time.time() + 3600
    os.utime(future, (t, t))
    stores.make_world_readable(data)
    nginx = start_nginx(data, str(tmp_path / "nginx"))
    try:
        with cluster(tmp_path, build_dir, nginx.url) as sc:
            sc.wait_leader()
            sc.wait_dataset("m", lambda d: d["phase"] == "Bound")
            got, n = heads(nginx)
            assert "/d0/future.bin" in got
            e = sc.tree("m", "/web/d0")[0]["/web/d0/future.bin"]
            assert e["etag"].startswith('"') and e["mtime"] == int(t) and e["size"] == 333

            fresh = os.path.join(data, "d1", "fresh.bin")
            with open(fresh, "wb") as f:
                f.write(b"n" * 77)
            stores.make_world_readable(data)
            resync(sc)
            got, n = heads(nginx, n)
            # each sync HEADs the future file again (its minute still lies ahead)
            assert "/d0/future.bin" in got
            written = int(os.stat(fresh).st_mtime)
            e = sc.tree("m", "/web/d1")[0]["/web/d1/fresh.bin"]
            assert e["size"] == 77
            if "/d1/fresh.bin" in got:
                assert e["etag"].startswith('"') and e["mtime"] == written
            else:
                # only when the minute of its writing had ended before the listing (a slow
                # machine): then it is a minute version
                assert e["etag"] == "weir:minute" and e["mtime"] == written // 60 * 60
    finally:
        nginx.stop()


def test_same_size_rewrite_within_the_minute_is_found(store_root, tmp_path, build_dir):
    """A file synced in the minute it was written, then rewritten with the same size in that
    same minute: the page shows the same size and minute, yet the next sync finds the new
    version (it HEADs what the previous sync saw before its minute ended)."""
    data, files = store_root
    nginx = start_nginx(data, str(tmp_path / "nginx"))
    path = os.path.join(data, "d2", "hot.bin")
    try:
        with cluster(tmp_path, build_dir, nginx.url) as sc:
            sc.wait_leader()
            sc.wait_dataset("m", lambda d: d["phase"] == "Bound")
            # Write, sync and rewrite late in one minute, sync again in the next: the page
            # then shows a minute that has ended, with the size the previous sync saw. The
            # assertions hold whatever the timing; a slow machine may only weaken the case.
            deadline = time.monotonic() + 90
            while not 45 <= time.time() % 60 < 52:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            with open(path, "wb") as f:
                f.write(b"1" * 500)
            stores.make_world_readable(data)
            first = resync(sc)
            e0 = sc.tree("m", "/web/d2")[0]["/web/d2/hot.bin"]
            t0 = int(os.stat(path).st_mtime)
            # the same size, other bytes, one second later at least (nginx's ETag changes)
            while int(time.time()) <= t0:
                time.sleep(0.05)
            with open(path + ".new", "wb") as f:
                f.write(b"2" * 500)
            os.chmod(path + ".new", 0o644)
            os.replace(path + ".new", path)
            t1 = int(os.stat(path).st_mtime)
            assert t1 > t0
            while time.time() < (t1 // 60 + 1) * 60 + 1:  # the minute of the rewrite ends
                time.sleep(0.1)
            resync(sc)
            e1 = sc.tree("m", "/web/d2")[0]["/web/d2/hot.bin"]
            assert e1["size"] == 500 and e1["mtime"] == t1, (e0, e1, first)
            assert e1["version"] == e0["version"] + 1 and e1["etag"] != e0["etag"]
            print(f"synced {e0['etag']} at {t0}, rewritten at {t1}: same minute "
                  f"{t0 // 60 == t1 // 60}")
    finally:
        nginx.stop()


def test_local_time_index_falls_back_to_heads(store_root, tmp_path, build_dir):
    """nginx with autoindex_localtime in a zone west of UTC shows old minutes for every file;
    the lister's check HEAD sees the difference and HEADs every file."""
    data, files = store_root
    nginx = start_nginx(data, str(tmp_path / "nginx"), localtime="EST5")
    try:
        with cluster(tmp_path, build_dir, nginx.url) as sc:
            sc.wait_leader()
            d = sc.wait_dataset("m", lambda d: d["phase"] == "Bound")
            assert d["total_files"] == len(files)
            got, _ = heads(nginx)
            assert len(got) == len(files), (len(got), len(files))
            tree, _ = sc.tree("m")
            for p, e in tree.items():
                st = os.stat(os.path.join(data, p[len("/web/"):]))
                assert e["etag"].startswith('"') and e["mtime"] == int(st.st_mtime), e
            assert "autoindex_localtime" in sc.c.masters[0].log()
            # and again at a re-sync (the page's minutes differ from the stored ones), with no
            # new version
            got, n = heads(nginx)
            resync(sc)
            assert len(heads(nginx, n)[0]) == len(files)
            again, _ = sc.tree("m")
            assert {p: e["version"] for p, e in again.items()} == {p: 1 for p in tree}
    finally:
        nginx.stop()


def test_worker_fills_a_minute_version(tmp_path):
    """A worker fills blocks of a version known to the minute (as a sync takes it from the
    page): the store's bytes whole while the file's Last-Modified lies in that minute; refused
    (409, nothing cached) once the file was rewritten, which puts it in a later minute, or when
    the minute is not the file's."""
    from test_worker import MiB, Env, make_file
    from weirtest.workerenv import EPOCH

    with Env(tmp_path, block_size=1 * MiB) as env:
        old = time.time() - OLD
        files = {}
        for fid, name in ((1, "a.bin"), (2, "b.bin"), (3, "c.bin")):
            path = os.path.join(env.data, name)
            files[fid] = make_file(path, 3 * MiB, fid)
            os.utime(path, (old, old))
        minute = int(old) // 60 * 60
        for m in env.masters:
            m.add_file(1, "ds", "/data/a.bin", 3 * MiB, minute, "weir:minute", env.block_size)
            m.add_file(2, "ds", "/data/b.bin", 3 * MiB, minute, "weir:minute", env.block_size)
            m.add_file(3, "ds", "/data/c.bin", 3 * MiB, minute - 60, "weir:minute",
                       env.block_size)
        # b.bin is rewritten with the same size: now, a later minute than the one published
        make_file(os.path.join(env.data, "b.bin"), 3 * MiB, 22)
        env.worker.start()
        for i in range(3):
            status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}", timeout=30)
            assert status == 200 and body == files[1][i * MiB:(i + 1) * MiB], (i, status)
        for fid in (2, 3):
            status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-{fid}-1-0", timeout=30)
            assert status == 409, (fid, status, body[:200])


class NoDateProxy:
    """Forwards GET and HEAD to a store and passes its answers on without their Date header,
    as some proxies and small servers answer."""

    def __init__(self, address, upstream_port):
        import http.client
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self):
                c = http.client.HTTPConnection(address, upstream_port, timeout=30)
                try:
                    hdrs = {k: v for k, v in self.headers.items()
                            if k.lower() in ("range", "if-match", "if-unmodified-since")}
                    c.request(self.command, self.path, headers=hdrs)
                    r = c.getresponse()
                    body = r.read()
                finally:
                    c.close()
                # send_response_only: no Date or Server of our own
                self.send_response_only(r.status, r.reason)
                for k, v in r.getheaders():
                    if k.lower() not in ("date", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                if self.command == "GET" and r.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            do_GET = do_HEAD = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{address}:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_listing_without_date_is_headed(store_root, tmp_path, build_dir):
    """Without the store's clock (no Date on the listing) no listed minute can be judged: every
    file is HEADed, at every sync, and unchanged files keep their versions."""
    data, files = store_root
    nginx = start_nginx(data, str(tmp_path / "nginx"))
    try:
        with NoDateProxy(ADDR, nginx.port) as proxy:
            with cluster(tmp_path, build_dir, proxy.url) as sc:
                sc.wait_leader()
                d = sc.wait_dataset("m", lambda d: d["phase"] == "Bound")
                assert d["total_files"] == len(files)
                got, n = heads(nginx)
                assert sorted(u.lstrip("/") for u in got) == sorted(files)
                tree, _ = sc.tree("m")
                assert all(e["etag"].startswith('"') and e["version"] == 1
                           for e in tree.values()), tree
                resync(sc)
                got, n = heads(nginx, n)
                assert len(got) == len(files)
                again, _ = sc.tree("m")
                assert {p: e["version"] for p, e in again.items()} == {p: 1 for p in tree}
    finally:
        nginx.stop()


def test_fuse_reads_files_synced_from_the_page(tmp_path):
    """The whole path: a demo cluster (three masters, three workers, weir-fuse) syncs old files
    from nginx's HTML page without HEADs, and reading them through the mount gives the store's
    bytes; a file rewritten afterwards (a later minute) is never served as the old version's
    blocks mixed with new ones, and after a sync reads give the new bytes."""
    import conftest
    from weirtest.fusecluster import DemoCluster

    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    old = time.time() - OLD
    content = {}

    def make(root):
        files = {}
        for i in range(12):
            rel = f"dir{i % 3}/file{i}.bin"
            path = os.path.join(root, "hbase", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = os.urandom(50_000 + 9_000 * i)
            with open(path, "wb") as f:
                f.write(data)
            os.utime(path, (old, old))
            files[rel], content[rel] = len(data), data
        stores.make_world_readable(root)
        return files

    d = tempfile.mkdtemp(prefix="weir-minute-fuse-")
    c = DemoCluster(d, conftest.BUILD_DIR, dataset=make, block_size="64Ki",
                    fuse_env={"WEIR_FUSE_REFRESH": "1s"})
    try:
        c.start()
        versions = {rel: c.stat(f"/hbase/{rel}") for rel in content}
        # all from the page, but for one check HEAD per listing thread (at most one per
        # directory here)
        minute = [rel for rel, v in versions.items() if v["etag"] == "weir:minute"]
        assert len(minute) >= len(content) - 3, versions
        for rel, data in content.items():
            with open(os.path.join(c.mnt, "hbase", rel), "rb") as f:
                assert f.read() == data, rel
        # rewritten upstream with the same size: not the synced version any more
        rel = minute[0]
        new = os.urandom(len(content[rel]))
        path = os.path.join(c.store_root, "hbase", rel)
        with open(path + ".new", "wb") as f:
            f.write(new)
        os.chmod(path + ".new", 0o644)
        os.replace(path + ".new", path)
        c.sync()
        c.wait(lambda: c.stat(f"/hbase/{rel}")["version"] > versions[rel]["version"], 60,
               "the new version")
        deadline = time.monotonic() + 60
        while True:  # the mount learns the new version at its next refresh
            try:
                with open(os.path.join(c.mnt, "hbase", rel), "rb") as f:
                    got = f.read()
            except OSError as e:  # the old version's blocks refused by the store
                assert e.errno == errno.EIO, e
                got = None
            if got == new:
                break
            assert got in (None, content[rel]), "a mix of the two versions was served"
            assert time.monotonic() < deadline, "the mount kept the old version"
            time.sleep(0.5)
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)
