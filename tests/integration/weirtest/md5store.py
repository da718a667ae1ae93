"""A stand-in for an S3-like store over HTTP whose ETag is the content's MD5 (as S3's is for
single-part uploads), for the content checks: GET/HEAD of /data/NAME with one bytes= range,
ETag = the MD5 of the bytes or what ETAGS[NAME] says (a store that describes other bytes than it
sends), If-Match honoured (412). GET /data/ lists the files as an HTML index (for a master that
syncs it); with last_modified, files carry a Last-Modified header too. Counts the GETs of each
file's bytes."""

import hashlib
import os
import threading
from email.utils import formatdate

from weirtest.fakeserver import FakeServer, JsonHandler
from weirtest.net import free_port


class Md5Store(FakeServer):
    def __init__(self, root, address="127.0.2.10", last_modified=False):
        super().__init__(address, free_port(address))
        self.root, self.etags, self.last_modified = root, {}, last_modified
        self.gets, self.lock = {}, threading.Lock()

    def etag(self, name, data):
        return self.etags.get(name) or '"' + hashlib.md5(data).hexdigest() + '"'

    def handler(self):
        store = self

        class H(JsonHandler):
            def do_HEAD(self):
                self.do_GET(body=False)

            def do_GET(self, body=True):
                if self.path in ("/data", "/data/"):
                    names = sorted(os.listdir(store.root))
                    page = "<html><body><ul>" + "".join(
                        f'<li><a href="{n}">{n}</a></li>' for n in names) + "</ul></body></html>"
                    data = page.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                name = self.path[len("/data/"):] if self.path.startswith("/data/") else None
                p = os.path.join(store.root, name) if name and "/" not in name else None
                if not p or not os.path.isfile(p):
                    return self.empty(404)
                with open(p, "rb") as f:
                    data = f.read()
                etag = store.etag(name, data)
                if self.headers.get("If-Match") not in (None, etag):
                    return self.empty(412)
                if body:
                    with store.lock:
                        store.gets[name] = store.gets.get(name, 0) + 1
                headers = [("ETag", etag)]
                if store.last_modified:
                    headers.append(("Last-Modified", formatdate(os.stat(p).st_mtime,
                                                                usegmt=True)))
                self.send_range(data, headers=headers, body=body)

        return H

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/data/"

    def get_count(self, name):
        with self.lock:
            return self.gets.get(name, 0)
