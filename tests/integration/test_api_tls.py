"""TLS on the cluster API (api.tls in the YAML): certificates made here by certtool (or openssl)
for 127.0.7.1, a master and a worker that speak only HTTPS, a worker that registers over it with
the CA file, weirctl that reads through it, and plain HTTP refused."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from weirtest.cluster import Master
from weirtest.config import Dataset, write_cluster_yaml
from weirtest.fusecluster import WorkerProc
from weirtest.fusemount import FuseDaemon, lazy_unmount
from weirtest.net import free_port, wait_listening
from weirtest.stores import Nginx, make_world_readable

NODE = "127.0.7.1"
NODE2 = "127.0.7.2"  # FUSE only: its blocks come from node1's worker over HTTPS
STORE = "127.0.7.4"
TOKEN = "tls-test-token"


def make_certs(d):
    """A CA and a server certificate for NODE signed by it; returns (ca, cert, key) paths."""
    ca_key, ca, key, cert = (os.path.join(d, n) for n in ("ca.key", "ca.pem", "srv.key",
                                                           "srv.pem"))
    if shutil.which("certtool"):
        def tmpl(name, text):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            return p
        run = lambda *a: subprocess.run(["certtool", *a], check=True, capture_output=True)
        run("--generate-privkey", "--key-type=ecdsa", "--outfile", ca_key)
        run("--generate-self-signed", "--load-privkey", ca_key, "--template",
            tmpl("ca.tmpl", "cn = weir test CA\nca\ncert_signing_key\nexpiration_days = 2\n"),
            "--outfile", ca)
        run("--generate-privkey", "--key-type=ecdsa", "--outfile", key)
        run("--generate-certificate", "--load-privkey", key, "--load-ca-certificate", ca,
            "--load-ca-privkey", ca_key, "--template",
            tmpl("srv.tmpl", f"cn = {NODE}\nip_address = {NODE}\ntls_www_server\n"
                             "signing_key\nexpiration_days = 2\n"), "--outfile", cert)
    elif shutil.which("openssl"):
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=weir test CA")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            key, "-out", os.path.join(d, "srv.csr"), "-subj", f"/CN={NODE}")
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write(f"subjectAltName = IP:{NODE}\nextendedKeyUsage = serverAuth\n")
        run("x509", "-req", "-in", os.path.join(d, "srv.csr"), "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    else:
        pytest.skip("neither certtool (gnutls-bin) nor openssl is installed to make certificates")
    return ca, cert, key


@pytest.fixture
def tls_node(tmp_path, build_dir):
    d = str(tmp_path)
    ca, cert, key = make_certs(d)
    store_root = os.path.join(d, "store")
    os.makedirs(os.path.join(store_root, "data"))
    with open(os.path.join(store_root, "data", "a.bin"), "wb") as f:
        f.write(os.urandom(3 << 20))
    make_world_readable(store_root)
    nginx = Nginx(store_root, STORE, os.path.join(d, "nginx"))
    raft, mport, wport = (free_port(NODE) for _ in range(3))
    with open(os.path.join(d, "token"), "w") as f:
        f.write(TOKEN + "\n")
    yaml_path = os.path.join(d, "cluster.yaml")
    master = worker = None

    class Env:
        pass
    env = Env()
    env.dir, env.ca, env.mport, env.wport, env.yaml = d, ca, mport, wport, yaml_path
    env.master_port = mport
    env.binary = os.path.join(build_dir, "services/master/weir-master")
    env.snapshot_threshold = None
    env.env = {}
    env.weirctl = os.path.join(build_dir, "services/ctl/weirctl")
    env.fuse_binary = os.path.join(build_dir, "services/fuse/weir-fuse")
    env.fuse = None
    try:
        nginx.start()
        write_cluster_yaml(
            yaml_path, name="tls", token_file="token",
            cluster_extra="  api: {tls: {certFile: srv.pem, keyFile: srv.key, caFile: ca.pem}}",
            nodes=[{"name": "node1", "address": NODE, "raftPort": raft, "masterPort": mport,
                    "workerPort": wport, "dataDir": f"{d}/data", "runtimeDir": f"{d}/run",
                    "mountRoot": f"{d}/mnt", "roles": ["master", "worker"]},
                   {"name": "node2", "address": NODE2, "dataDir": f"{d}/data2",
                    "runtimeDir": f"{d}/run2", "mountRoot": f"{d}/mnt2", "roles": ["fuse"]}],
            datasets=[Dataset("ds", mounts=[("data", f"{nginx.url}data/")], block_size="1Mi",
                              tiers=[("MEM", f"{d}/shm", "64Mi", "0.95", "0.7")])])
        env.yaml_path = yaml_path
        master = Master(env, 0, "node1", NODE)
        master.log_path = os.path.join(d, "master.log")
        master.start()
        wait_listening(NODE, mport, master.proc, what="weir-master", log=master.log_path)
        env.master = master
        worker = WorkerProc(os.path.join(build_dir, "services/worker/weir-worker"), yaml_path,
                            "node1", d)
        env.worker = worker
        yield env
    finally:
        if env.fuse:
            env.fuse.stop()
            env.fuse.kill()
            lazy_unmount(env.fuse.mountpoint)
        if worker:
            worker.kill()
        if master:
            master.kill()
        nginx.stop()


def https(env, method, port, path, body=None, token=TOKEN, timeout=5):
    ctx = ssl.create_default_context(cafile=env.ca)
    req = urllib.request.Request(f"https://{NODE}:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s")


def test_api_over_tls(tls_node):
    env = tls_node
    # the master serves HTTPS with the certificate the test made, verified by its CA
    wait_for(lambda: json.loads(https(env, "GET", env.mport, "/v1/status")[1])["serving"], 30,
             "a serving master over TLS")
    assert https(env, "GET", env.mport, "/healthz", token=None)[0] == 200
    # plain HTTP to the same port gets no HTTP answer
    with socket.create_connection((NODE, env.mport), timeout=5) as s:
        s.settimeout(5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
    assert not data.startswith(b"HTTP/1.1 200"), data
    # a client that does not trust the CA is refused by its own TLS check
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"https://{NODE}:{env.mport}/healthz",
                               context=ssl.create_default_context(), timeout=5)

    assert https(env, "POST", env.mport, "/v1/datasets/ds/sync", body={})[0] in (202, 409)
    wait_for(lambda: json.loads(https(env, "GET", env.mport, "/v1/datasets/ds")[1])
             ["total_files"] == 1, 30, "a synced dataset")
    # the worker registers and heartbeats over HTTPS, with the CA file of the YAML
    env.worker.start()
    wait_for(lambda: any(w["alive"] for w in json.loads(
        https(env, "GET", env.mport, "/v1/workers")[1])["workers"]), 30,
        "the worker registered over TLS")
    st = json.loads(https(env, "GET", env.mport, "/v1/datasets/ds/stat?path=/data/a.bin")[1])
    code, body = https(env, "GET", env.wport, f"/v1/blocks/{st['epoch']}-{st['file_id']}-{st['version']}-0")
    assert code == 200 and len(body) == 1 << 20
    # weir-fuse on a node without a worker: metadata from the master and blocks from node1's
    # worker, both over HTTPS with the token
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        pytest.skip("no /dev/fuse or fusermount3: the FUSE part cannot run here")
    served = json.loads(https(env, "GET", env.wport, "/v1/status")[1])["served_bytes"]
    mnt = os.path.join(env.dir, "mnt2", "ds")
    os.makedirs(mnt, exist_ok=True)
    env.fuse = FuseDaemon(env.fuse_binary, env.yaml, "node2", "ds", mnt, env.dir,
                          env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"}).start()
    with open(os.path.join(env.dir, "store", "data", "a.bin"), "rb") as f:
        want = f.read()
    with open(os.path.join(mnt, "data", "a.bin"), "rb") as f:
        assert f.read() == want
    after = json.loads(https(env, "GET", env.wport, "/v1/status")[1])["served_bytes"]
    assert after - served >= len(want) - (1 << 20), (served, after)

    # weirctl reads through TLS too (the CA file from the YAML)
    out = subprocess.run([env.weirctl, "--config", env.yaml, "masters"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "node1" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([env.weirctl, "--config", env.yaml, "datasets"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "ds" in out.stdout, out.stdout + out.stderr


def test_bad_tls_files_are_refused_with_a_message(tmp_path, build_dir):
    d = str(tmp_path)
    with open(os.path.join(d, "bad.pem"), "w") as f:
        f.write("not a certificate\n")
    port = free_port(NODE)
    yaml_path = os.path.join(d, "cluster.yaml")
    write_cluster_yaml(
        yaml_path, name="tls", cluster_extra="  api: {tls: {certFile: bad.pem, keyFile: bad.pem}}",
        nodes=[{"name": "node1", "address": NODE, "raftPort": free_port(NODE), "masterPort": port,
                "dataDir": f"{d}/data", "roles": ["master"]}], datasets=[])
    out = subprocess.run([os.path.join(build_dir, "services/master/weir-master"), "--config",
                          yaml_path, "--node", "node1"], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS":
                                          "unix:path=/nonexistent"})
    assert out.returncode != 0
    assert "bad.pem: not a PEM file" in out.stdout + out.stderr, out.stdout + out.stderr
