"""A third attacker's look at issue 14 (after test_attack_http.py and test_attack_second.py):
hostile spellings that used to be read as something else, and replicated state a token holder
could grow or fill with names the cluster does not have. Each test replays what was sent and
asserts the refusal.

| sent | used to | now |
|---|---|---|
| `GET /v1/blocks/ID%00junk` (worker), `GET /v1/datasets/ds%00x`, `PUT .../labels/k%00x` (master) | the path cut at the NUL: block ID served (a cold one fetched from the store), dataset ds answered, label k written | `400 the path contains a NUL byte (%00)`, nothing read, fetched or written |
| `GET /v1/blocks/E-F-V-01` | block 1 served under a second name | `400` (one spelling per block) |
| `OPEN ID\\0junk` on the worker socket | read as `OPEN ID` | `ERR line contains a NUL byte`, the connection goes on |
| `POST /v1/workers` as `nope` or with another `api` | recorded in the replicated state and listed by `GET /v1/workers` (weirctl load sends the token to that address) | `404` / `400`, nothing recorded |
| 1,100 distinct label keys on one dataset | all written (each in every snapshot) | `409` from the 1,025th, the others still settable |
| `POST /v1/content/mismatch` (new) with the read token, none, or a wrong one; with odd bodies | — | `401`; `400` naming the field |
| `POST /v1/load` of a real file declared 2^62 bytes long | the worker went through 2^40 blocks (~150,000 a second, for weeks), the request never answered, progress totals of 2^40 blocks | the file's first failed block stops it: answered in seconds, totals as they were |

Run inside a private network namespace (COMMON.md); the one-node cluster of test_attack_http.py
runs on 127.0.6.x.
"""

import concurrent.futures
import os
import socket

from test_attack_http import NODE, READ_TOKEN, TOKEN, node, raw_get  # noqa: F401  (node: a fixture)
from weirtest.cluster import http_request

AUTH = [("Authorization", f"Bearer {TOKEN}")]


def raw(port, target, method="GET", headers=AUTH):
    """(status, body) of one request over a plain socket, TARGET sent as is."""
    with socket.create_connection((NODE, port), timeout=10) as s:
        s.sendall((f"{method} {target} HTTP/1.1\r\nHost: {NODE}\r\n" +
                   "".join(f"{k}: {v}\r\n" for k, v in headers) +
                   "Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_nul_in_the_path_is_refused_not_cut(node):
    pre = node.block_prefix("f1.bin")
    before = node.store_requests()
    status, body = raw(node.worker_port, f"/v1/blocks/{pre}-0%00junk")
    assert status == 400 and b"NUL byte" in body, (status, body[:200])
    # the token is still checked first: a stranger learns nothing more
    assert raw(node.worker_port, f"/v1/blocks/{pre}-0%00junk", headers=())[0] == 401
    assert node.store_requests() == before  # the cold block was not fetched
    status, body = raw(node.master_port, "/v1/datasets/ds%00x")
    assert status == 400 and b"NUL byte" in body, (status, body[:200])
    status, body = raw(node.master_port, "/v1/datasets/ds/labels/k%00x", method="DELETE")
    assert status == 400, (status, body[:200])
    code, body, _ = http_request("GET", node.master_url("/v1/datasets/ds/labels"), token=TOKEN)
    assert code == 200 and "k" not in body["labels"], body
    # the same without the NUL works
    assert raw(node.worker_port, f"/v1/blocks/{pre}-0")[0] == 200
    assert raw(node.master_port, "/v1/datasets/ds")[0] == 200


def test_block_ids_have_one_spelling(node):
    pre = node.block_prefix("f0.bin")
    assert raw(node.worker_port, f"/v1/blocks/{pre}-0")[0] == 200
    epoch, fid, ver = pre.split("-")
    for bad in (f"{pre}-00", f"{pre}-01", f"{epoch}-0{fid}-{ver}-0", f"{epoch}-{fid}-0{ver}-0"):
        status, body = raw(node.worker_port, f"/v1/blocks/{bad}")
        assert status == 400 and b"invalid block id" in body, (bad, status, body[:200])
        assert raw(node.worker_port, f"/v1/blocks/{bad}", method="DELETE")[0] == 400, bad


def test_socket_line_with_a_nul_is_refused(node):
    pre = node.block_prefix("f0.bin")
    assert raw(node.worker_port, f"/v1/blocks/{pre}-0")[0] == 200  # cached now
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(os.path.join(node.dir, "run", "worker.sock"))
        s.sendall(f"OPEN {pre}-0\0junk\n".encode())
        assert s.recv(200) == b"ERR line contains a NUL byte\n"
        # an answer, not a hang-up: the next line on the same connection is served
        s.sendall(f"OPEN {pre}-0\n".encode())
        assert s.recv(200).startswith(b"OK ")


def test_only_the_yamls_workers_register_at_their_address(node):
    url = node.master_url("/v1/workers")
    code, body, _ = http_request("POST", url, token=TOKEN, body={
        "node": "nope", "api": "127.0.6.1:1", "tiers": [], "blocks": []})
    assert code == 404 and "nope" in body["error"], (code, body)
    code, body, _ = http_request("POST", url, token=TOKEN, body={
        "node": "node1", "api": "evil.example:80", "tiers": [], "blocks": []})
    assert code == 400 and "workerPort" in body["error"], (code, body)
    code, body, _ = http_request("GET", url, token=TOKEN)
    assert code == 200
    listed = {(w["node"], w["api"]) for w in body["workers"]}
    assert listed == {("node1", f"{NODE}:{node.worker_port}")}, listed


def test_labels_per_dataset_are_bounded(node):
    url = node.master_url("/v1/datasets/ds/labels/")

    def put(i):
        return http_request("PUT", url + f"k{i}", body={"value": "v"}, token=TOKEN,
                            timeout=30)[0]

    # concurrent writes commit together (the 1,024 sequential writes would take a minute)
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        codes = list(ex.map(put, range(1024)))
    assert codes == [200] * 1024, sorted(set(codes))
    code, body, _ = http_request("PUT", url + "one-more", body={"value": "v"}, token=TOKEN)
    assert code == 409 and "1024 labels" in body["error"], (code, body)
    # an existing label is still set, and a deleted one makes room
    assert put(5) == 200
    assert http_request("DELETE", url + "k0", token=TOKEN)[0] == 200
    code, _, _ = http_request("PUT", url + "one-more", body={"value": "v"}, token=TOKEN)
    assert code == 200
    code, body, _ = http_request("GET", node.master_url("/v1/datasets/ds/labels"), token=TOKEN)
    assert code == 200 and len(body["labels"]) == 1024


def test_load_of_a_file_described_too_large_stops_at_its_end(node):
    epoch, fid, ver = node.block_prefix("f0.bin").split("-")
    url = f"http://{NODE}:{node.worker_port}"
    code, before, _ = http_request("GET", url + "/v1/status", token=TOKEN)
    assert code == 200
    code, body, _ = http_request("POST", url + "/v1/load", token=TOKEN, timeout=60, body={
        "dataset": "ds", "files": [{"epoch": epoch, "file_id": int(fid), "version": int(ver),
                                    "size": 2 ** 62}]})
    assert code == 200, (code, body)
    # its real blocks are cached, the first one past its end failed and ended the file: at most
    # the 64 blocks in flight then were asked
    assert 1 <= body["failed"] <= 64 and body["blocks"] <= 64 + 8, body
    code, after, _ = http_request("GET", url + "/v1/status", token=TOKEN)
    grew = after["load"]["blocks"] - before["load"]["blocks"]
    assert code == 200 and grew == body["blocks"], (before["load"], after["load"], body)
    assert after["load"]["active"] == 0


def test_only_the_cluster_token_marks_a_version_as_mismatched(node):
    """POST /v1/content/mismatch (a worker telling the others that a file's bytes did not match
    its ETag) makes the worker refuse that version: the read token and strangers cannot."""
    pre = node.block_prefix("f2.bin")
    url = f"http://{NODE}:{node.worker_port}"
    assert raw(node.worker_port, f"/v1/blocks/{pre}-0")[0] == 200
    for token in (None, READ_TOKEN, "wrong"):
        code, _, _ = http_request("POST", url + "/v1/content/mismatch", token=token,
                                  body={"file": f"{pre}-0", "blocks": 1})
        assert code == 401, (token, code)
    assert raw(node.worker_port, f"/v1/blocks/{pre}-0")[0] == 200
    for body in ({"file": f"{pre}-1", "blocks": 1}, {"file": f"{pre}-0", "blocks": 0},
                 {"file": f"{pre}-0", "blocks": 65537}, {"file": "x", "blocks": 1},
                 {"file": f"{pre}-0", "blocks": 1, "path": 5},
                 {"file": f"{pre}-0", "blocks": 1, "path": "/x\nweir-worker: forged log line"}):
        code, ans, _ = http_request("POST", url + "/v1/content/mismatch", token=TOKEN, body=body)
        assert code == 400 and ans["error"], (body, code, ans)
    code, ans, _ = http_request("POST", url + "/v1/content/mismatch", token=TOKEN,
                                body={"file": f"{pre}-0", "blocks": 1, "path": "/data/f2.bin"})
    assert code == 200 and ans == {"dropped": 1}, (code, ans)
    status, body = raw(node.worker_port, f"/v1/blocks/{pre}-0")
    assert status == 410 and b"content mismatch" in body, (status, body[:200])
