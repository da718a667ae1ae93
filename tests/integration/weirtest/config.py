"""The one YAML builder of the integration tests: a cluster YAML from Python values.

    write_cluster_yaml(path, name="t", token_file=tok, raft=FAST_RAFT,
                       nodes=[{"name": "node1", "address": "127.0.1.1", "raftPort": 19200,
                               "masterPort": 19998, "dataDir": "/tmp/x/node1"}],
                       datasets=[Dataset("ds", mounts=[("data", "http://127.0.3.1:80/")])])

Node keys are the YAML's own spelling (docs/config.md); a None value is left out. Strings that
YAML would read as something else (numbers, booleans, anything with ':' or spaces) are
single-quoted, as a person writes them; tests that edit the text rely on that spelling.
"""

import dataclasses
import re

# Short Raft timeouts: elections on a loaded test machine settle in well under a second.
FAST_RAFT = {"electionTimeout": "300ms", "heartbeatTimeout": "50ms"}

_PLAIN = re.compile(r"[A-Za-z0-9_./@+][A-Za-z0-9_./@+-]*")
_NOT_A_STRING = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                           r"|true|false|null|yes|no|on|off|y|n|~", re.IGNORECASE)


def scalar(value):
    """VALUE as a YAML scalar: numbers as they are, strings plain when unambiguous."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    value = str(value)
    if _PLAIN.fullmatch(value) and not _NOT_A_STRING.fullmatch(value):
        return value
    return "'" + value.replace("'", "''") + "'"  # YAML single quotes: '' is the only escape


def flow(mapping):
    """{k: v} as a YAML flow mapping; lists become flow sequences; None values are left out."""
    parts = []
    for k, v in mapping.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            v = "[" + ", ".join(scalar(x) for x in v) + "]"
        elif isinstance(v, dict):
            v = flow(v)
        else:
            v = scalar(v)
        parts.append(f"{k}: {v}")
    return "{" + ", ".join(parts) + "}"


@dataclasses.dataclass
class Dataset:
    """A Dataset and its AlluxioRuntime. MOUNTS: [(name, url)] or [(name, url, {option:
    value})]; TIERS: [(medium, path, quota, high, low)] (high and low may be left out);
    MASTER_REPLICAS None leaves the runtime's master section out; EXTRA: raw lines under the
    Dataset's spec; FUSE: the runtime's fuse section ({"attrTimeout": ...})."""

    name: str
    mounts: list
    tiers: list = dataclasses.field(
        default_factory=lambda: [("MEM", "/dev/shm", "64Mi", "0.9", "0.5")])
    block_size: str = None
    sync_interval: str = None
    replicas: int = 1
    master_replicas: int = 1
    fuse: dict = None
    extra: str = ""
    runtime: bool = True  # False: the Dataset alone, for a second dataset of one runtime

    def lines(self):
        out = ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
               f"metadata: {{name: {scalar(self.name)}}}", "spec:"]
        if self.block_size:
            out.append(f"  blockSize: {scalar(self.block_size)}")
        if self.sync_interval:
            out.append(f"  syncInterval: {scalar(self.sync_interval)}")
        if self.extra:
            out.append(self.extra)
        out.append("  mounts:")
        for mount in self.mounts:
            name, url = mount[0], mount[1]
            options = mount[2] if len(mount) > 2 else None
            out.append(f"    - mountPoint: {scalar(url)}")
            out.append(f"      name: {scalar(name)}")
            if options:
                out.append("      options:")
                out += [f"        {k}: {scalar(v)}" for k, v in options.items()]
        if not self.runtime:
            return out
        out += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
                f"metadata: {{name: {scalar(self.name)}}}", "spec:",
                f"  replicas: {self.replicas}"]
        if self.master_replicas is not None:
            out.append(f"  master: {{replicas: {self.master_replicas}}}")
        if self.fuse:
            out.append(f"  fuse: {flow(self.fuse)}")
        out += ["  tieredstore:", "    levels:"]
        for tier in self.tiers:
            medium, path, quota = tier[:3]
            high, low = tier[3:5] if len(tier) > 3 else (None, None)
            out.append("      - " + flow({"mediumtype": medium, "path": path, "quota": quota,
                                          "high": None if high is None else str(high),
                                          "low": None if low is None else str(low)}))
        return out


def cluster_yaml(*, name, nodes, datasets, token_file=None, raft=None, cluster_extra=""):
    """The YAML text. NODES: [{YAML key: value}]; DATASETS: [Dataset]; RAFT: the raft section
    ({"electionTimeout": ..., "secretFile": ...}) or None; CLUSTER_EXTRA: raw lines under the
    Cluster's spec."""
    lines = ["apiVersion: weir.io/v1", "kind: Cluster", f"metadata: {{name: {scalar(name)}}}",
             "spec:"]
    if token_file:
        lines.append(f"  tokenFile: {scalar(token_file)}")
    if raft:
        lines.append(f"  raft: {flow(raft)}")
    if cluster_extra:
        lines.append(cluster_extra)
    lines.append("  nodes:")
    lines += ["    - " + flow(n) for n in nodes]
    for ds in datasets:
        lines += ds.lines()
    return "\n".join(lines) + "\n"


def write_cluster_yaml(path, **kw):
    """Writes cluster_yaml(**KW) to PATH; returns PATH."""
    with open(path, "w") as f:
        f.write(cluster_yaml(**kw))
    return path


def write_token(path, token):
    """Writes a token file (one line) and returns its path."""
    with open(path, "w") as f:
        f.write(token + "\n")
    return path
