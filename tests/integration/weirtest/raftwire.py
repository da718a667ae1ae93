"""Raft traffic from Python, as an attacker (or a test) would send it.

Two wire formats:
- libraft's own TCP transport (raft 0.15 / raft-cowsql): a preamble (u64 protocol 1, u64 server
  id, u64 address buffer length, the NUL-terminated address padded to 8 bytes), then messages
  (u64 type, u64 header length, header, payload), all little-endian. weir-master before its
  authenticated transport accepted this from anyone.
- weir's authenticated handshake (docs/master.md, services/master/handshake.h), version 1.
"""

import hashlib
import hmac
import os
import socket
import struct
import time

RAFT_IO_APPEND_ENTRIES = 1
RAFT_IO_REQUEST_VOTE = 3
RAFT_COMMAND = 1

# ---- libraft's own transport ----


def libraft_preamble(server_id, address):
    a = address.encode() + b"\0"
    a += b"\0" * (-len(a) % 8)
    return struct.pack("<QQQ", 1, server_id, len(a)) + a


def _message(mtype, header):
    return struct.pack("<QQ", mtype, len(header)) + header


def pad8(data):
    return data + b" " * (-len(data) % 8)


def append_entries(term, prev_index, prev_term, commit, entries=()):
    """ENTRIES: [(term, payload bytes)], payloads padded to 8 bytes by the caller."""
    header = struct.pack("<QQQQ", term, prev_index, prev_term, commit)
    header += struct.pack("<Q", len(entries))
    for eterm, data in entries:
        header += struct.pack("<QB3xI", eterm, RAFT_COMMAND, len(data))
    header += b"\0" * 8  # libraft sizes this header one u64 larger than it fills
    return _message(RAFT_IO_APPEND_ENTRIES, header) + b"".join(d for _, d in entries)


def request_vote(term, candidate_id, last_index, last_term, pre_vote=False, disrupt=True):
    flags = (1 if disrupt else 0) | (2 if pre_vote else 0)
    return _message(RAFT_IO_REQUEST_VOTE,
                    struct.pack("<QQQQQ", term, candidate_id, last_index, last_term, flags))


def connect(host, port, source=None, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def send_quietly(sock, data):
    """Sends DATA; False when the peer already closed the connection."""
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def closed_by_peer(sock, timeout=3.0):
    """True when the peer closes SOCK (EOF or reset) within TIMEOUT, sending nothing."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return data == b""


# ---- weir's handshake, version 1 ----

MAGIC = b"WEIRRAFT"
VERSION = 1
HELLO, CHALLENGE, PROOF, ACCEPT = 1, 2, 3, 4
CHALLENGE_BYTES = 84
ACCEPT_BYTES = 12


def derive_key(secret):
    h = hashlib.blake2b(digest_size=32)
    h.update(b"weir raft transport key v1\0")
    h.update(secret.encode() if isinstance(secret, str) else secret)
    return h.digest()


def _mac(key, label, *parts):
    m = hmac.new(key, label + b"\0", hashlib.sha256)
    for p in parts:
        m.update(p)
    return m.digest()


def header(mtype, extra=0, version=VERSION, magic=MAGIC):
    return magic + struct.pack("<BBH", version, mtype, extra)


def hello(from_id, to_id, address, nonce=None, version=VERSION):
    a = address.encode()
    return (header(HELLO, len(a), version=version) + struct.pack("<QQ", from_id, to_id)
            + (nonce or os.urandom(32)) + a)


def recv_exact(sock, n, timeout=3.0):
    """N bytes, or fewer if the peer closed first."""
    sock.settimeout(timeout)
    out = b""
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
    return out


class HandshakeResult:
    def __init__(self, stage, challenge_mac_ok=None):
        self.stage = stage  # "refused-hello", "refused-proof", "accepted"
        self.challenge_mac_ok = challenge_mac_ok


def weir_handshake(sock, key, from_id, to_id, address):
    """Runs the connector's side. Returns a HandshakeResult saying how far it got."""
    h = hello(from_id, to_id, address)
    sock.sendall(h)
    chal = recv_exact(sock, CHALLENGE_BYTES)
    if len(chal) < CHALLENGE_BYTES:
        return HandshakeResult("refused-hello")
    assert chal[:8] == MAGIC and chal[8] == VERSION and chal[9] == CHALLENGE, chal[:12]
    mac_ok = hmac.compare_digest(_mac(key, b"weir raft v1 challenge", h, chal[:52]), chal[52:])
    sock.sendall(header(PROOF) + _mac(key, b"weir raft v1 proof", h, chal))
    acc = recv_exact(sock, ACCEPT_BYTES)
    if acc == header(ACCEPT):
        return HandshakeResult("accepted", mac_ok)
    return HandshakeResult("refused-proof", mac_ok)


def wait_until(pred, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()
