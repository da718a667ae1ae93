"""An HTTP store that invents a dataset tree on the fly: nothing on disk, any size.

DIRS directories d00000.. under the root, each with FILES files f000000.bin..; sizes and mtimes
are functions of the file's number, so every listing and HEAD agrees. Listings come in nginx's
autoindex formats: "json" (autoindex_format json: exact sizes and times) or "html" (exact bytes,
times to the minute). HEAD answers with exact Content-Length, Last-Modified and ETag. The store
counts its requests by kind. Bad input on demand (set BAD to one of them, or mount the special
directories directly):
  loop/      lists a subdirectory loop/ of itself, forever
  bigpage/   a 100 MiB listing page
  longname/  one entry whose name is 64 KiB long
  huge/      a directory of 10,000,000 entries (streamed; never materialised here)
"""

import email.utils
import http.server
import json
import threading
import urllib.parse

BASE_MTIME = 1_700_000_000
BAD_DIRS = ("loop", "bigpage", "longname", "huge")


class SyntheticStore:
    def __init__(self, address, dirs, files, fmt="json", port=0):
        self.dirs, self.files, self.fmt = dirs, files, fmt
        self.overrides = {}  # "dNNNNN/fNNNNNN.bin" -> (size, mtime)
        self.bad = None      # a name of BAD_DIRS listed in the root too
        self.counts = {"list": 0, "head": 0, "get": 0}
        self.lock = threading.Lock()
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                store.handle(self, head=False)

            def do_HEAD(self):
                store.handle(self, head=True)

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def count(self, kind):
        with self.lock:
            self.counts[kind] += 1

    def file_version(self, d, f):
        rel = f"d{d:05d}/f{f:06d}.bin"
        if rel in self.overrides:
            return self.overrides[rel]
        n = d * self.files + f
        return (n * 37) % 100_000 + 1, BASE_MTIME + (n * 13) % 86_400

    # ---- listings ----

    def entries(self, parts):
        """(name, is_dir, size, mtime) of the directory PARTS, or None when there is none."""
        if not parts:
            out = [(f"d{d:05d}", True, 0, BASE_MTIME) for d in range(self.dirs)]
            if self.bad:
                out.append((self.bad, True, 0, BASE_MTIME))
            return out
        if parts[0] in BAD_DIRS:
            return None  # handled by streaming
        if len(parts) == 1 and parts[0].startswith("d") and parts[0][1:].isdigit():
            d = int(parts[0][1:])
            if d >= self.dirs:
                return None
            return [(f"f{f:06d}.bin", False) + self.file_version(d, f)
                    for f in range(self.files)]
        return None

    @staticmethod
    def http_date(t):
        return email.utils.formatdate(t, usegmt=True)

    def render(self, path, entries):
        if self.fmt == "json":
            return "application/json", json.dumps([
                {"name": n, "type": "directory" if isdir else "file",
                 "mtime": self.http_date(mt), **({} if isdir else {"size": size})}
                for n, isdir, size, mt in entries]).encode()
        import time
        rows = []
        for n, isdir, size, mt in entries:
            href = urllib.parse.quote(n) + ("/" if isdir else "")
            shown = (n + ("/" if isdir else ""))[:50]
            when = time.strftime("%d-%b-%Y %H:%M", time.gmtime(mt))
            rows.append(f'<a href="{href}">{shown}</a>{" " * (51 - len(shown))}{when}'
                        f'{"-" if isdir else size:>20}')
        body = (f"<html>\r\n<head><title>Index of {path}</title></head>\r\n<body>\r\n"
                f'<h1>Index of {path}</h1><hr><pre><a href="../">../</a>\r\n' +
                "\r\n".join(rows) + "\r\n</pre><hr></body>\r\n</html>\r\n")
        return "text/html", body.encode()

    def stream_bad(self, req, parts):
        """Streams one of the bad listings; True when PARTS named one."""
        kind = parts[0]
        if kind == "loop":
            if all(p == "loop" for p in parts):
                self.send(req, *self.render("/" + "/".join(parts) + "/",
                                            [("loop", True, 0, BASE_MTIME),
                                             ("x.bin", False, 1, BASE_MTIME)]))
                return True
            return False
        if len(parts) != 1:
            return False
        if kind == "longname":
            self.send(req, *self.render("/longname/", [("n" * 65536, False, 1, BASE_MTIME),
                                                       ("ok.bin", False, 1, BASE_MTIME)]))
            return True
        # bigpage: 100 MiB; huge: 10M entries. Close-delimited, generated in chunks.
        req.send_response(200)
        req.send_header("Content-Type", "application/json" if self.fmt == "json"
                        else "text/html")
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True
        total = 100 << 20 if kind == "bigpage" else None
        sent, i = 0, 0
        try:
            req.wfile.write(b"[" if self.fmt == "json" else b"<html><body><pre>\n")
            while True:
                if total is not None and sent >= total:
                    break
                if total is None and i >= 10_000_000:
                    break
                chunk = []
                for _ in range(1000):
                    if self.fmt == "json":
                        chunk.append(('%s{"name":"e%09d","type":"file","mtime":"%s","size":1}'
                                      % ("," if i else "", i,
                                         self.http_date(BASE_MTIME))).encode())
                    else:
                        chunk.append(b'<a href="e%09d">e%09d</a> 01-Jan-2024 00:00 1\n'
                                     % (i, i))
                    i += 1
                data = b"".join(chunk)
                req.wfile.write(data)
                sent += len(data)
            req.wfile.write(b"]" if self.fmt == "json" else b"</pre></body></html>\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return True

    def send(self, req, ctype, body, head=False):
        req.send_response(200)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if not head:
            req.wfile.write(body)

    def handle(self, req, head):
        path = urllib.parse.unquote(urllib.parse.urlsplit(req.path).path)
        parts = [p for p in path.split("/") if p]
        if path.endswith("/"):
            self.count("list")
            if parts and parts[0] in BAD_DIRS and self.stream_bad(req, parts):
                return
            entries = self.entries(parts)
            if entries is None:
                req.send_error(404)
                return
            self.send(req, *self.render(path, entries), head=head)
            return
        self.count("head" if head else "get")
        if (len(parts) == 2 and parts[0][1:].isdigit() and parts[1].startswith("f")
                and parts[1].endswith(".bin")):
            d, f = int(parts[0][1:]), int(parts[1][1:-4])
            if d < self.dirs and f < self.files:
                size, mtime = self.file_version(d, f)
                req.send_response(200)
                req.send_header("Content-Length", str(size))
                req.send_header("Last-Modified", self.http_date(mtime))
                req.send_header("ETag", f'"{mtime:x}-{size:x}"')
                req.send_header("Accept-Ranges", "bytes")
                req.end_headers()
                if not head:
                    req.wfile.write(b"\0" * size)
                return
        if parts and parts[-1] in ("x.bin", "ok.bin"):
            req.send_response(200)
            req.send_header("Content-Length", "1")
            req.send_header("Last-Modified", self.http_date(BASE_MTIME))
            req.end_headers()
            if not head:
                req.wfile.write(b"x")
            return
        req.send_error(404)
