"""Walks of large directories: the master's paged listings (?limit=&after=), weirctl ls and
weir-fuse reading a directory larger than one page, xattr probes answered once, inodes dropped
on forget.

One real weir-master (127.0.3.50) syncs an nginx autoindex store (127.0.3.4) holding a directory
of 2,600 files (more than two of weir-fuse's 1,024-entry pages; odd names among them) and 20
directories of 50 files; weir-fuse mounts it with debug logging, whose lines count the requests
the kernel sent. Run as root (FUSE, drop_caches), in a private network namespace.
"""

import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import weir_binary
from weirtest.fusemount import FuseDaemon, drop_caches, lazy_unmount
from weirtest.stores import ODD_NAMES, Nginx, SyncCluster

BIG = 2600
SMALL_DIRS, SMALL_FILES = 20, 50


def big_names():
    return [f"img_{i:05d}.JPEG" for i in range(BIG - len(ODD_NAMES))] + list(ODD_NAMES)


def by_bytes(names):
    return sorted(names, key=lambda n: n.encode())


@pytest.fixture(scope="module")
def walk():
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse")
    if not shutil.which("nginx"):
        pytest.skip("nginx missing (apt install nginx)")
    for name in ("weir-master", "weir-fuse", "weirctl"):
        weir_binary(name)
    import conftest

    d = tempfile.mkdtemp(prefix="weir-fusewalk-")
    src = os.path.join(d, "src")
    big = os.path.join(src, "big")
    os.makedirs(big)
    for name in big_names():
        with open(os.path.join(big, name), "wb") as f:
            f.truncate(4096)
    # weir-fuse's page is 1,024 names: a directory of exactly one page, one of a page and one
    # name, and an empty one
    for n in (1024, 1025):
        os.makedirs(os.path.join(src, f"k{n}"))
        for j in range(n):
            open(os.path.join(src, f"k{n}", f"x{j:04d}"), "wb").close()
    os.makedirs(os.path.join(src, "empty"))
    for i in range(SMALL_DIRS):
        sd = os.path.join(src, f"d{i:02d}")
        os.makedirs(sd)
        for j in range(SMALL_FILES):
            with open(os.path.join(sd, f"f{j:03d}"), "wb") as f:
                f.write(b"%d %d\n" % (i, j))
    os.chmod(d, 0o755)
    nginx = Nginx(src, "127.0.3.4", os.path.join(d, "nginx"))
    sc = fuse = None
    mnt = os.path.join(d, "mnt")
    try:
        nginx.start()
        sc = SyncCluster(os.path.join(d, "masters"), conftest.BUILD_DIR,
                         {"ds": {"mounts": [("m", nginx.url, {})]}}, n=1)
        sc.c.start()
        sc.wait_leader(timeout=30)
        ds = sc.wait_dataset("ds", lambda x: x.get("synced") or x.get("sync_error"),
                             timeout=120)
        assert not ds.get("sync_error"), ds
        os.makedirs(mnt)
        fuse = FuseDaemon(weir_binary("weir-fuse"), sc.c.yaml_path, sc.c.masters[0].name, "ds",
                          mnt, d, env={"WEIR_LOG_LEVEL": "debug", "WEIR_FUSE_RETRY": "20s",
                                       # these tests count the pages the daemon asks for a
                                       # directory; listing ahead of walks (test_fuse_tree.py)
                                       # would ask for some before the kernel does
                                       "WEIR_FUSE_LIST_AHEAD": "0"})
        fuse.start()
        yield type("Walk", (), {"sc": sc, "fuse": fuse, "mnt": mnt, "src": src, "dir": d})
    finally:
        try:
            if fuse:
                fuse.stop()
                fuse.kill()
        finally:
            lazy_unmount(mnt)
            if sc:
                sc.c.stop()
            nginx.stop()
            shutil.rmtree(d, ignore_errors=True)


def api_ls(w, path, **query):
    q = urllib.parse.urlencode(dict(path=path, **query))
    return w.sc.get(f"/v1/datasets/ds/ls?{q}", timeout=30)


def log_lines(w, needle):
    with open(w.fuse.log_path, errors="replace") as f:
        return sum(needle in line for line in f)


def test_api_pages_cover_the_directory_in_byte_order(walk):
    want = by_bytes(big_names())
    got, after, pages = [], None, 0
    while True:
        query = {"limit": 1000}
        if after is not None:
            query["after"] = after
        code, body = api_ls(walk, "/m/big", **query)
        assert code == 200, body
        assert len(body["entries"]) <= 1000
        got += [e["name"] for e in body["entries"]]
        pages += 1
        if "next" not in body:
            break
        assert body["next"] == body["entries"][-1]["name"]
        after = body["next"]
    assert got == want
    assert pages == 3
    # a page boundary at the last name: an empty page without next
    code, body = api_ls(walk, "/m/big", limit=5, after=want[-1])
    assert (code, body["entries"], "next" in body) == (200, [], False)
    # after= the name just before an odd one (UTF-8, spaces, %, &, #, ? percent-encoded)
    for odd in ODD_NAMES:
        i = want.index(odd)
        query = {"limit": 2, "after": want[i - 1]} if i else {"limit": 2}
        code, body = api_ls(walk, "/m/big", **query)
        assert code == 200, body
        assert [e["name"] for e in body["entries"]] == want[i:i + 2]
    # exactly the rest in one page: no next
    code, body = api_ls(walk, "/m/big", limit=100, after=want[-101])
    assert [e["name"] for e in body["entries"]] == want[-100:] and "next" not in body
    # fields=attr: what a file system shows, without ETag and store URL
    code, body = api_ls(walk, "/m/big", limit=3, fields="attr")
    assert code == 200 and len(body["entries"]) == 3
    assert all("etag" not in e and "ufs_url" not in e and e["size"] == 4096 and e["file_id"]
               for e in body["entries"])
    code, body = api_ls(walk, "/m/big", limit=3, fields="full")
    assert all(e["etag"] and e["ufs_url"].startswith("http://") for e in body["entries"])
    # without limit: the whole directory, as in the API's first version
    code, body = api_ls(walk, "/m/big")
    assert code == 200 and len(body["entries"]) == BIG


def test_api_paging_rejects_bad_queries(walk):
    for query, needle in [({"limit": 0}, "limit must be"), ({"limit": 10001}, "limit must be"),
                          ({"limit": "ten"}, "limit must be"), ({"after": "x"}, "needs limit"),
                          ({"limit": 5, "after": "a" * 5000}, "after is longer"),
                          ({"limit": 5, "fields": "all"}, "fields must be attr or full"),
                          ({"fields": "attr"}, "fields= needs limit=")]:
        code, body = api_ls(walk, "/m/big", **query)
        assert code == 400 and needle in body["error"], (query, code, body)
    code, body = api_ls(walk, "/m/big/img_00000.JPEG", limit=5)
    assert code == 400 and "not a directory" in body["error"]
    code, body = api_ls(walk, "/m/nope", limit=5)
    assert code == 404


def test_stat_of_a_directory_pages_its_entries(walk):
    q = urllib.parse.urlencode({"path": "/m/big", "limit": 3})
    code, body = walk.sc.get(f"/v1/datasets/ds/stat?{q}")
    assert code == 200, body
    assert body["type"] == "dir"
    assert [e["name"] for e in body["entries"]] == by_bytes(big_names())[:3]
    assert body["next"] == body["entries"][-1]["name"]
    # a file's stat is the ENTRY alone, limit or not
    q = urllib.parse.urlencode({"path": "/m/big/img_00001.JPEG", "limit": 3})
    code, body = walk.sc.get(f"/v1/datasets/ds/stat?{q}")
    assert code == 200 and body["size"] == 4096 and "entries" not in body


def weirctl(walk, *args):
    return subprocess.run([weir_binary("weirctl"), "--config", walk.sc.c.yaml_path, *args],
                          capture_output=True, text=True, timeout=60)


def test_weirctl_ls_pages(walk):
    want = by_bytes(big_names())
    out = weirctl(walk, "ls", "--page-size", "7", "/ds/m/big")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == want
    out = weirctl(walk, "ls", "--json", "/ds/m/big")  # default page: 1000
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["path"] == "/m/big" and [e["name"] for e in body["entries"]] == want
    out = weirctl(walk, "ls", "--page-size", "0", "/ds/m/big")
    assert out.returncode == 2 and "--page-size must be 1..10000" in out.stderr
    out = weirctl(walk, "ls", "/ds/m/nope")
    assert out.returncode == 1 and "no such path" in out.stderr


def test_fuse_lists_a_directory_larger_than_a_page(walk):
    big = os.path.join(walk.mnt, "m", "big")
    calls = log_lines(walk, "Listed /m/big after")
    names = os.listdir(big)
    # every name once, in the master's byte order (readdir order is what listdir returns)
    assert names == by_bytes(big_names())
    listed = log_lines(walk, "Listed /m/big after") - calls
    assert listed == 3, listed  # three pages of up to 1,024 names, never the whole directory
    with os.scandir(big) as it:
        sizes = {e.name: e.stat(follow_symlinks=False).st_size for e in it}
    assert len(sizes) == BIG and set(sizes.values()) == {4096}
    # a reader that stops early and one that rewinds see the same listing
    fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = os.listdir(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.listdir(fd) == first == names
    finally:
        os.close(fd)
    with open(os.path.join(big, "ünïcödé-文件.bin"), "rb") as f:
        assert f.read() == b"\0" * 4096


def test_fuse_page_boundaries(walk):
    for n in (1024, 1025):
        d = os.path.join(walk.mnt, "m", f"k{n}")
        calls = log_lines(walk, f"Listed /m/k{n} after")
        assert os.listdir(d) == [f"x{j:04d}" for j in range(n)]
        assert log_lines(walk, f"Listed /m/k{n} after") - calls == (1 if n == 1024 else 2)
        assert os.listdir(d) == [f"x{j:04d}" for j in range(n)]  # again, from the caches
    assert os.listdir(os.path.join(walk.mnt, "m", "empty")) == []


def test_files_listed_open_without_asking_the_master(walk):
    d = os.path.join(walk.mnt, "m", "d07")
    os.listdir(d)  # readdirplus: every entry with its attributes
    before = log_lines(walk, "Listed ")
    for j in range(SMALL_FILES):
        with open(os.path.join(d, f"f{j:03d}"), "rb") as f:
            assert f.read() == b"7 %d\n" % j
    # the daemon knew size, version and file id from the listing: no page asked again, no
    # entry asked per file
    assert log_lines(walk, "Listed ") == before
    assert log_lines(walk, "Asking the master for /m/d07/") == 0


def test_xattrs_are_refused_once_for_the_whole_mount(walk):
    before = log_lines(walk, "getxattr ") + log_lines(walk, "listxattr ")
    for _ in range(2):
        subprocess.run(["ls", "-lR", os.path.join(walk.mnt, "m")], check=True,
                       stdout=subprocess.DEVNULL, timeout=120)
        drop_caches()
    for name in ("img_00001.JPEG", "img_00002.JPEG"):
        with pytest.raises(OSError) as e:
            os.getxattr(os.path.join(walk.mnt, "m", "big", name), "user.weir.version")
        assert e.value.errno in (errno.EOPNOTSUPP, errno.ENODATA)
        with pytest.raises(OSError):
            os.listxattr(os.path.join(walk.mnt, "m", "big", name))
    after = log_lines(walk, "getxattr ") + log_lines(walk, "listxattr ")
    # at most one getxattr and one listxattr for the mount's lifetime, whatever ls probes
    assert after <= 2, after
    assert before <= after


def test_forget_drops_inodes(walk):
    files = BIG + SMALL_DIRS * SMALL_FILES + 1024 + 1025
    forgot = log_lines(walk, "forgot inode")
    subprocess.run(["find", os.path.join(walk.mnt, "m")], check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    rss_walked = rss(walk.fuse.proc.pid)
    deadline = time.monotonic() + 30
    while log_lines(walk, "forgot inode") - forgot < files * 0.9:
        assert time.monotonic() < deadline, (
            f"{log_lines(walk, 'forgot inode') - forgot} of {files} inodes forgotten")
        drop_caches()  # 2 would do (dentries and inodes); 3 also drops pages
        time.sleep(0.5)
    # a second walk allocates them again and needs no more memory than the first
    subprocess.run(["find", os.path.join(walk.mnt, "m")], check=True, stdout=subprocess.DEVNULL,
                   timeout=120)
    assert rss(walk.fuse.proc.pid) < rss_walked + (8 << 20)


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_dbus_counters(walk, private_bus):
    """A second mount publishing on a private bus: XattrRequests stays at most 2 through two
    `ls -lR`, ListingRequests counts the pages asked, Inodes follows the walk and the forgets."""
    mnt = os.path.join(walk.dir, "mnt-bus")
    os.makedirs(mnt, exist_ok=True)
    fuse = FuseDaemon(weir_binary("weir-fuse"), walk.sc.c.yaml_path, walk.sc.c.masters[0].name,
                      "ds", mnt, walk.dir, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus})
    fuse.log_path = os.path.join(walk.dir, "weir-fuse-bus.log")

    def prop(name, check=True):
        out = subprocess.run(["busctl", f"--address={private_bus}", "get-property",
                              "io.weir.Fuse1", "/io/weir/Fuse1", "io.weir.Fuse1", name],
                             capture_output=True, text=True, timeout=10)
        if not check and out.returncode != 0:
            return None
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[1])

    def wait_prop(name, pred, timeout=20):
        # The status thread takes the bus name after the mount is ready: until it has, the
        # name is unknown to the bus (a loaded machine shows it), so that is waited on too.
        deadline = time.monotonic() + timeout
        while True:
            late = time.monotonic() > deadline
            v = prop(name, check=late)
            if late or (v is not None and pred(v)):
                return v
            time.sleep(0.5)

    try:
        fuse.start()
        wait_prop("Inodes", lambda v: v >= 1)
        for _ in range(2):
            subprocess.run(["ls", "-lR", os.path.join(mnt, "m")], check=True,
                           stdout=subprocess.DEVNULL, timeout=120)
        files = BIG + SMALL_DIRS * SMALL_FILES + 1024 + 1025
        # the properties are refreshed with STATUS=, every 5 s
        assert wait_prop("Inodes", lambda v: v >= files) >= files
        assert prop("XattrRequests") <= 2
        # 3 pages of big, 1 + 2 of k1024/k1025, one per small and empty directory, /m and /
        assert wait_prop("ListingRequests", lambda v: v >= 3 + 3 + SMALL_DIRS + 3) >= 29
        drop_caches()
        assert wait_prop("Inodes", lambda v: v < files * 0.1) < files * 0.1
    finally:
        fuse.stop()
        fuse.kill()
        lazy_unmount(mnt)
