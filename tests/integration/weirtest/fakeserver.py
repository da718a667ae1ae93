"""The base of the stand-ins written in Python (fake masters and workers): a threaded HTTP
server in this process that answers JSON, started and stopped like a Daemon.

Subclasses define handler(), which returns a JsonHandler subclass; the handler reaches the
stand-in's state through self.server.owner.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    @property
    def owner(self):
        return self.server.owner

    def reply(self, code, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def empty(self, code):
        """A reply without a body."""
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_range(self, data, headers=(), body=True):
        """DATA, or the one "bytes=LO-HI" range the request asks for (206 with Content-Range);
        no body for a HEAD (BODY false). Returns the number of body bytes sent."""
        code, lo, hi = 200, 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng:
            a, b = rng.split("=", 1)[1].split("-")
            lo, hi, code = int(a), min(int(b), len(data) - 1), 206
        part = data[lo:hi + 1]
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(part)))
        if code == 206:
            self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(data)}")
        self.end_headers()
        if not body:
            return 0
        self.wfile.write(part)
        return len(part)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # a stand-in that drops a connection on purpose (a dead master) logs no traceback
        pass


class FakeServer:
    """ADDRESS:PORT served by handler() in a thread; a context manager; stop() is idempotent."""

    def __init__(self, address, port):
        self.address = address
        self.port = port
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return f"http://{self.address}:{self.port}"

    def handler(self):
        raise NotImplementedError

    def start(self):
        self.httpd = _Server((self.address, self.port), self.handler())
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
