"""A walk through weir-fuse gives exactly the tree, with the compact listing pages and the
listings read ahead of walks; the master's format=binary pages match its JSON pages.

One real weir-master (127.0.3.50) syncs an nginx autoindex store (127.0.3.4) holding ~3,600
files: 40 directories of 60 files of assorted sizes (sparse), a directory of 1,030 (two of
weir-fuse's pages), odd names, a nested chain and an empty directory. weir-fuse mounts it with
its defaults (WEIR_FUSE_LIST_AHEAD 8) and debug logging, whose "Listed" lines say which pages it
asked the master for. Run as root (FUSE, drop_caches), in a private network namespace.
"""

import http.client
import os
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import weir_binary
from weirtest.fusemount import FuseDaemon, drop_caches, lazy_unmount
from weirtest.stores import ODD_NAMES, Nginx, SyncCluster

CLASSES, PER_CLASS, WIDE = 40, 60, 1030


def size_of(i, j):
    return 0 if j == 0 else (i * 7919 + j * 104729) % 300000


def make_tree(src):
    def touch(path, size):
        with open(path, "wb") as f:
            f.truncate(size)

    for i in range(CLASSES):
        d = os.path.join(src, f"c{i:03d}")
        os.makedirs(d)
        for j in range(PER_CLASS):
            touch(os.path.join(d, f"c{i:03d}_{j}.JPEG"), size_of(i, j))
    os.makedirs(os.path.join(src, "wide"))
    for j in range(WIDE):
        touch(os.path.join(src, "wide", f"w{j:05d}"), j)
    os.makedirs(os.path.join(src, "odd"))
    for j, name in enumerate(ODD_NAMES):
        touch(os.path.join(src, "odd", name), 100 + j)
    deep = os.path.join(src, "deep", "a", "b", "c")
    os.makedirs(deep)
    touch(os.path.join(deep, "leaf.bin"), 12345)
    os.makedirs(os.path.join(src, "empty"))


def tree_of(root):
    """{relative path: ("d", 0) or ("f", size)} of everything under ROOT, by lstat."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            out[rel] = ("d", 0) if os.path.isdir(p) else ("f", st.st_size)
            assert os.path.isdir(p) or os.path.isfile(p), rel  # nothing but files and dirs
    return out


def find_printf(root):
    out = subprocess.run(["find", root, "-mindepth", "1", "-printf", r"%y %s %P\n"],
                         check=True, capture_output=True, timeout=300).stdout
    lines = out.decode().splitlines()
    # find reports a directory's own size; compare types and file sizes only
    return sorted(ln if ln[0] == "f" else "d " + ln.split(" ", 2)[2] for ln in lines)


@pytest.fixture(scope="module")
def tree():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse")
    if not shutil.which("nginx"):
        pytest.skip("nginx missing (apt install nginx)")
    for name in ("weir-master", "weir-fuse"):
        weir_binary(name)
    import conftest

    d = tempfile.mkdtemp(prefix="weir-fusetree-")
    src = os.path.join(d, "src")
    make_tree(src)
    os.chmod(d, 0o755)
    nginx = Nginx(src, "127.0.3.4", os.path.join(d, "nginx"))
    sc = None
    try:
        nginx.start()
        sc = SyncCluster(os.path.join(d, "masters"), conftest.BUILD_DIR,
                         {"ds": {"mounts": [("m", nginx.url, {})]}}, n=1)
        sc.c.start()
        sc.wait_leader(timeout=30)
        ds = sc.wait_dataset("ds", lambda x: x.get("synced") or x.get("sync_error"),
                             timeout=120)
        assert not ds.get("sync_error"), ds
        yield type("Tree", (), {"sc": sc, "src": src, "dir": d})
    finally:
        if sc:
            sc.c.stop()
        nginx.stop()
        shutil.rmtree(d, ignore_errors=True)


class Mount:
    """A weir-fuse of the tree's dataset on a mountpoint of its own; always unmounted."""

    def __init__(self, tree, label, env=None):
        self.mnt = os.path.join(tree.dir, f"mnt-{label}")
        os.makedirs(self.mnt, exist_ok=True)
        self.fuse = FuseDaemon(weir_binary("weir-fuse"), tree.sc.c.yaml_path,
                               tree.sc.c.masters[0].name, "ds", self.mnt, tree.dir,
                               env=dict({"WEIR_LOG_LEVEL": "debug", "WEIR_FUSE_RETRY": "20s"},
                                        **(env or {})))
        self.fuse.log_path = os.path.join(tree.dir, f"weir-fuse-{label}.log")

    def __enter__(self):
        try:
            self.fuse.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.fuse.stop()
            self.fuse.kill()
        finally:
            lazy_unmount(self.mnt)

    def lines(self, needle):
        with open(self.fuse.log_path, errors="replace") as f:
            return sum(needle in line for line in f)


def test_walk_gives_exactly_the_tree(tree):
    want = tree_of(tree.src)
    assert len(want) > 3400
    want_find = find_printf(tree.src)
    with Mount(tree, "walk") as m:
        root = os.path.join(m.mnt, "m")
        drop_caches()
        assert find_printf(root) == want_find  # cold: pages fetched, read ahead
        assert tree_of(root) == want  # warm: from the kernel's caches
        # dentries and inodes dropped: the kernel looks names up again, answered from the
        # cached pages; the tree is the same
        drop_caches()
        assert tree_of(root) == want
        out = subprocess.run(["ls", "-lR", root], check=True, capture_output=True,
                             timeout=300).stdout.decode()
        assert sum(1 for ln in out.splitlines() if ln.startswith("-r--r--r--")) == \
            sum(1 for t, _ in want.values() if t == "f")
        # file contents of a listed file: its size, zeros (sparse in the store)
        with open(os.path.join(root, "deep", "a", "b", "c", "leaf.bin"), "rb") as f:
            assert f.read() == b"\0" * 12345
        # the daemon read compact pages: no bad page, no JSON fallback needed
        assert m.lines("Bad listing") == 0


def test_listings_are_read_ahead_of_a_walk(tree):
    with Mount(tree, "ahead") as m:
        root = os.path.join(m.mnt, "m")
        names = os.listdir(root)
        assert names[:3] == ["c000", "c001", "c002"]
        # reading /m queued its first subdirectories: wait until c003's page has arrived
        deadline = time.monotonic() + 60
        while m.lines("Listed /m/c003 after ''") == 0:
            assert time.monotonic() < deadline, "c003 was not listed ahead"
            time.sleep(0.2)
        # the walk comes to it: answered from the cache, the master is not asked again
        assert len(os.listdir(os.path.join(root, "c003"))) == PER_CLASS
        assert m.lines("Listed /m/c003 after") == 1
        # bounded: nothing far past the walk was listed (the window is 8 directories)
        assert m.lines("Listed /m/c030 after") == 0


def test_list_ahead_off(tree):
    with Mount(tree, "off", env={"WEIR_FUSE_LIST_AHEAD": "0"}) as m:
        root = os.path.join(m.mnt, "m")
        os.listdir(root)
        assert sorted(os.listdir(os.path.join(root, "c001"))) == \
            sorted(f"c001_{j}.JPEG" for j in range(PER_CLASS))
        assert m.lines("Listed /m/c002 after") == 0
    out = subprocess.run([weir_binary("weir-fuse"), "--config", tree.sc.c.yaml_path, "--node",
                          tree.sc.c.masters[0].name, "--dataset", "ds", "--mountpoint",
                          os.path.join(tree.dir, "mnt-bad")],
                         env=dict(os.environ, WEIR_FUSE_LIST_AHEAD="65"), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert "Bad WEIR_FUSE_LIST_AHEAD=65: expected a number of directories from 0 (off) to 64" \
        in out.stderr


def raw_get(tree, api_path, **query):
    m = tree.sc.c.masters[0]
    u = urllib.parse.urlsplit(m.url(f"{api_path}?{urllib.parse.urlencode(query)}"))
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", f"{u.path}?{u.query}",
                     headers={"Authorization": f"Bearer {tree.sc.c.token}"})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read()
    finally:
        conn.close()


def decode_page(body):
    """The compact page (docs/api.md) -> (epoch, more, [(name, type, size, file_id, version)])."""
    magic, version, epoch, count, flags = struct.unpack_from("<4sIQII", body, 0)
    assert (magic, version) == (b"WLST", 1)
    off, out = 24, []
    for _ in range(count):
        typ, pad, nlen, mtime = struct.unpack_from("<BBHq", body, off)
        off += 12
        size = fid = ver = 0
        if typ == 1:
            size, fid, ver = struct.unpack_from("<QQQ", body, off)
            off += 24
        out.append((body[off:off + nlen].decode(), "file" if typ == 1 else "dir", size, fid, ver,
                    mtime))
        off += nlen
    assert off == len(body)
    return epoch, bool(flags & 1), out


def test_binary_pages_match_json(tree):
    for path in ("/m/wide", "/m/odd", "/m", "/"):
        after, pages = None, 0
        while True:
            q = {"path": path, "limit": 500}
            if after is not None:
                q["after"] = after
            code, ctype, body = raw_get(tree, "/v1/datasets/ds/ls", format="binary", **q)
            assert code == 200 and ctype == "application/vnd.weir.listing", (code, body[:200])
            epoch, more, entries = decode_page(body)
            code, js = tree.sc.get("/v1/datasets/ds/ls?" + urllib.parse.urlencode(
                dict(q, fields="attr")))
            assert code == 200
            assert [(e["name"], e["type"], e.get("size", 0), e.get("file_id", 0),
                     e.get("version", 0), e.get("mtime", 0)) for e in js["entries"]] == entries
            assert more == ("next" in js)
            assert all(e["epoch"] == f"{epoch:016x}" for e in js["entries"] if e["type"] == "file")
            pages += 1
            if not more:
                break
            after = entries[-1][0]
        assert pages == (3 if path == "/m/wide" else 1)


def test_binary_format_rejects_bad_queries(tree):
    for path, query, needle in [
            ("ls", {"path": "/m", "limit": 5, "format": "xml"}, "format must be json or binary"),
            ("ls", {"path": "/m", "format": "binary"}, "format=binary needs ls and limit="),
            ("stat", {"path": "/m", "limit": 5, "format": "binary"}, "needs ls and limit=")]:
        code, _, body = raw_get(tree, f"/v1/datasets/ds/{path}", **query)
        assert code == 400 and needle in body.decode(), (query, code, body)
    code, _, body = raw_get(tree, "/v1/datasets/ds/ls", path="/m/nope", limit=5, format="binary")
    assert code == 404, body
    code, _, body = raw_get(tree, "/v1/datasets/nope/ls", path="/m", limit=5, format="binary")
    assert code == 404, body
    code, _, body = raw_get(tree, "/v1/datasets/ds/ls", path="/m/odd/UPPER.lower", limit=5,
                            format="binary")
    assert code == 400 and b"not a directory" in body
    # JSON stays the default and format=json says so explicitly
    code, ctype, body = raw_get(tree, "/v1/datasets/ds/ls", path="/m/odd", limit=5,
                                format="json")
    assert code == 200 and ctype.startswith("application/json") and body.startswith(b"{")
