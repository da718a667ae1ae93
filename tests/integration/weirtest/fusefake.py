"""A stand-in master and worker for weir-fuse tests: the API of docs/api.md over a local tree.

It lets the FUSE daemon's own behaviour (fd passing, redirects to a leader, a worker that dies,
the store fallback) be tested exactly, apart from the real master and worker. Servers bind
127.0.4.x only (the FUSE tests' range).
"""

import os
import re
import socket
import threading
import urllib.parse

from weirtest.fakeserver import FakeServer, JsonHandler

# The cluster epoch the fake master gives every file (block ids start with it, docs/api.md).
EPOCH = "00000000000000e1"


class Tree:
    """The dataset: mount NAME -> local directory; file ids and versions are assigned on sight."""

    def __init__(self, dataset, mounts, block_size):
        self.dataset = dataset
        self.mounts = dict(mounts)  # name -> (local dir, store url)
        self.block_size = block_size
        self.ids = {}  # dataset path -> id
        self.by_id = {}
        self.versions = {}  # id -> version
        self.locations = {}  # (id, version) -> {index: [node]}
        self.lock = threading.Lock()

    def local(self, path):
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in self.mounts:
            return None
        base = self.mounts[parts[0]][0]
        if ".." in parts:
            return None
        return os.path.join(base, *parts[1:])

    def entry(self, path):
        parts = [p for p in path.split("/") if p]
        if not parts:
            return {"name": "/", "type": "dir", "size": 0, "mtime": 0}
        local = self.local(path)
        if local is None or not os.path.exists(local):
            return None
        st = os.stat(local)
        e = {"name": parts[-1], "mtime": st.st_mtime}
        url = self.mounts[parts[0]][1].rstrip("/") + "/" + urllib.parse.quote("/".join(parts[1:]))
        e["ufs_url"] = url
        if os.path.isdir(local):
            e.update(type="dir", size=0)
            return e
        with self.lock:
            fid = self.ids.get(path)
            if fid is None:
                fid = len(self.ids) + 1
                self.ids[path] = fid
                self.by_id[fid] = path
                self.versions[fid] = 1
            version = self.versions[fid]
        e.update(type="file", size=st.st_size, file_id=fid, version=version, epoch=EPOCH,
                 etag=f'"{st.st_size}-{st.st_mtime_ns}"')
        return e

    def listing(self, path):
        parts = [p for p in path.split("/") if p]
        if not parts:
            return [self.entry("/" + m) for m in sorted(self.mounts)]
        local = self.local(path)
        if local is None or not os.path.isdir(local):
            return None
        return [self.entry(path.rstrip("/") + "/" + n) for n in sorted(os.listdir(local))]


class Master(FakeServer):
    """A fake master. STATE["leader"] (address:port of the leader, or None) decides whether it
    answers, redirects (307 to the leader's address) or refuses (503)."""

    def __init__(self, tree, address, port, state):
        super().__init__(address, port)
        self.tree, self.state = tree, state
        self.requests = 0
        self.blocks_requests = 0  # GET /v1/blocks: the round trips a read pays for locations

    def handler(self):
        master = self

        class Handler(JsonHandler):
            def do_GET(self):
                master.requests += 1
                leader = master.state.get("leader")
                me = f"{master.address}:{master.port}"
                if leader is None:
                    return self.reply(503, {"error": "no leader"}, [("Retry-After", "1")])
                if leader != me:
                    return self.reply(307, {}, [("Location", f"http://{leader}{self.path}")])
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                t = master.tree
                m = re.fullmatch(r"/v1/datasets/([^/]+)(/ls|/stat)?", u.path)
                if m and urllib.parse.unquote(m.group(1)) == t.dataset:
                    raw = master.state.get("wire_pages", {}).get(q.get("path"))
                    if m.group(2) == "/ls" and q.get("format") == "binary" and raw is not None:
                        # a compact page as the test wrote it (docs/api.md), malformed or not
                        self.send_response(200)
                        self.send_header("Content-Type", "application/vnd.weir.listing")
                        self.send_header("Content-Length", str(len(raw)))
                        self.end_headers()
                        return self.wfile.write(raw)
                    if m.group(2) == "/ls":
                        entries = t.listing(q.get("path", "/"))
                        if entries is None:
                            return self.reply(404, {"error": "no such directory"})
                        return self.reply(200, {"path": q.get("path"), "entries": entries})
                    if m.group(2) == "/stat":
                        e = t.entry(q.get("path", "/"))
                        if e is None:
                            return self.reply(404, {"error": "no such file"})
                        return self.reply(200, e)
                    total = 0
                    files = 0
                    for name, (d, _) in t.mounts.items():
                        for dp, dn, fn in os.walk(d):
                            for f in fn:
                                total += os.path.getsize(os.path.join(dp, f))
                                files += 1
                    # what each worker caches, from the block locations as the master does
                    by_node, cached = {}, 0
                    with t.lock:
                        for (fid, _), blocks in t.locations.items():
                            size = os.path.getsize(t.local(t.by_id[fid]))
                            for idx, nodes in blocks.items():
                                n = min(t.block_size, size - idx * t.block_size)
                                cached += n if nodes else 0
                                for node in nodes:
                                    by_node[node] = by_node.get(node, 0) + n
                    return self.reply(200, {"name": t.dataset, "phase": "Bound",
                                            "ufs_total_size": total, "total_files": files,
                                            "cached": cached, "cached_by_node": by_node})
                if u.path == "/v1/blocks":
                    master.blocks_requests += 1
                    fid, ver = int(q["file"]), int(q["version"])
                    with t.lock:
                        locs = t.locations.get((fid, ver), {})
                        locs = {str(k): list(v) for k, v in locs.items()}
                    return self.reply(200, {"block_size": t.block_size, "locations": locs})
                return self.reply(404, {"error": "no route"})

        return Handler


class Worker(FakeServer):
    """A fake worker: GET /v1/blocks/ID (Range honoured) caches the block into CACHE_DIR and
    reports it to the tree's locations as NODE; worker.sock in RUNTIME_DIR hands out fds of
    cached blocks. Counts what it served."""

    def __init__(self, tree, node, address, port, cache_dir, runtime_dir=None):
        super().__init__(address, port)
        self.tree, self.node = tree, node
        self.cache_dir = cache_dir
        self.runtime_dir = runtime_dir
        self.served = 0
        self.fills = 0
        self.waits = 0  # WAIT requests on the socket
        self.fd_opens = 0
        self.socket_requests = 0  # every OPEN or WAIT on worker.sock (a round trip)
        self.socket_misses = 0  # answered MISS
        self.fill_lock = threading.Lock()
        self.count_lock = threading.Lock()
        self.conns = set()  # open socket connections: a stopped worker answers none of them
        os.makedirs(cache_dir, exist_ok=True)
        self.sock = None
        self.sock_thread = None

    def handler(self):
        worker = self

        class Handler(JsonHandler):
            def do_GET(self):
                m = re.fullmatch(r"/v1/blocks/" + EPOCH + r"-(\d+)-(\d+)-(\d+)", self.path)
                if not m:
                    return self.empty(404)
                data = worker.block(*map(int, m.groups()))
                if data is None:
                    return self.empty(404)
                # counted after the write: += around the call would race the other threads
                sent = self.send_range(data)
                worker.served += sent

        return Handler

    def block_path(self, fid, ver, idx):
        return os.path.join(self.cache_dir, f"{fid}-{ver}-{idx}")

    def block(self, fid, ver, idx):
        p = self.block_path(fid, ver, idx)
        with self.fill_lock:  # one fill per block, as the real worker does
            if not os.path.exists(p):
                self.fill(p, fid, ver, idx)
        if not os.path.exists(p):
            return None
        with open(p, "rb") as f:
            return f.read()

    def fill(self, p, fid, ver, idx):
        if True:
            path = self.tree.by_id.get(fid)
            if path is None:
                return
            with open(self.tree.local(path), "rb") as f:
                f.seek(idx * self.tree.block_size)
                data = f.read(self.tree.block_size)
            tmp = f"{p}.tmp.{threading.get_ident()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, p)
            self.fills += 1
            with self.tree.lock:
                self.tree.locations.setdefault((fid, ver), {}).setdefault(idx, []).append(
                    self.node)

    def serve_socket(self, sock):
        # SOCK, not self.sock: stop() clears that while a request may still be answered here.
        # A connection may carry many requests (weir-fuse keeps them open), each on a thread.
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with self.count_lock:
                self.conns.add(conn)
            threading.Thread(target=self.serve_conn, args=(conn,), daemon=True).start()

    def serve_conn(self, conn):
        try:
            self.serve_lines(conn)
        finally:
            with self.count_lock:
                self.conns.discard(conn)
            conn.close()

    def serve_lines(self, conn):
        buf = b""
        while True:
            while b"\n" not in buf:
                try:
                    chunk = conn.recv(256)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            try:
                self.answer(conn, line + b"\n")
            except OSError:
                return

    def answer(self, conn, line):
        m = re.fullmatch(rb"(OPEN|WAIT) " + EPOCH.encode() + rb"-(\d+)-(\d+)-(\d+)( \d+ \d+)?\n",
                         line)
        if not m or (m.group(1) == b"WAIT") != bool(m.group(5)):
            conn.sendall(b"ERR bad request\n")
            return
        fid, ver, idx = (int(m.group(i)) for i in (2, 3, 4))
        with self.count_lock:
            self.socket_requests += 1
        p = self.block_path(fid, ver, idx)
        if m.group(1) == b"WAIT":
            # fills first and answers with the whole block (the real worker answers
            # "PART" as soon as the range is there; the reader handles both)
            with self.count_lock:
                self.waits += 1
            try:
                self.block(fid, ver, idx)
            except OSError:
                pass
        if not os.path.exists(p):
            with self.count_lock:
                self.socket_misses += 1
            conn.sendall(b"MISS\n")
            return
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        try:
            socket.send_fds(conn, [f"OK {os.fstat(fd).st_size}\n".encode()], [fd])
            with self.count_lock:
                self.fd_opens += 1
        finally:
            os.close(fd)

    def start(self):
        super().start()
        if self.runtime_dir:
            os.makedirs(self.runtime_dir, exist_ok=True)
            path = os.path.join(self.runtime_dir, "worker.sock")
            if os.path.exists(path):
                os.unlink(path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            os.chmod(path, 0o600)
            self.sock.listen(64)
            self.sock_thread = threading.Thread(target=self.serve_socket, args=(self.sock,),
                                                daemon=True)
            self.sock_thread.start()
        return self

    def stop(self):
        super().stop()
        if self.sock:
            # close() alone does not wake a thread blocked in accept(); shutdown() does
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock_thread.join(timeout=5)
            with self.count_lock:
                conns = list(self.conns)
            for conn in conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sock.close()
            try:
                os.unlink(os.path.join(self.runtime_dir, "worker.sock"))
            except OSError:
                pass
            self.sock = None
