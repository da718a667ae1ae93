#!/usr/bin/env python3
"""Asserts what nix/module.nix produced for each case of eval.nix (JSON on stdin).

Usage: check.py EVAL_JSON PACKAGE_ROOT SOURCE_ROOT. PACKAGE_ROOT is where `meson install
--destdir` put weir (the directory holding lib/systemd), the module's package in eval.nix.
"""
import json
import os
import subprocess
import sys
import tempfile

d = json.load(open(sys.argv[1]))
pkg_root, src = sys.argv[2], sys.argv[3]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def docs(text):
    """The JSON documents of a rendered multi-document stream."""
    parts = [p for p in text.split("---\n") if p.strip()]
    return [json.loads(p) for p in parts]


# Defect 1: NixOS links every systemd.packages entry's lib/systemd/system-generators/* and then
# every systemd.generators entry into one directory under `set -e`; a name twice fails the
# system build. Do the same with what meson install put there.
for case in ("path", "settings", "derivation"):
    c = d[case]
    names = []
    for p in c["packages"]:
        gdir = os.path.join(p, "lib/systemd/system-generators")
        names += sorted(os.listdir(gdir)) if os.path.isdir(gdir) else []
    names += sorted(c["generators"])
    check("weir-generator" in names, f"{case}: weir-generator reaches /etc/systemd/system-generators")
    dup = sorted({n for n in names if names.count(n) > 1})
    check(not dup, f"{case}: no generator linked twice (would be 'File exists'): {dup}")
check(pkg_root in d["path"]["packages"], "the package is in systemd.packages (units, generator)")

# /etc/weir/cluster.yaml for each form.
fixture = os.path.join(src, "tests/nix/fixtures/cluster.yaml")
e = d["path"]["etc"]
check(e["kind"] == "nix-path" and e["path"] == fixture, "a Nix path is the file itself")
checked = d["path"]["checks"][0]["yaml"]["path"] if d["path"]["checks"] else ""
check([x["name"] for x in d["path"]["checks"]] == ["weir-cluster-yaml-check"]
      and checked.startswith("/nix/store/") and checked.endswith("-cluster.yaml"),
      f"a Nix path is copied to the store and checked with weirctl config check ({checked})")

e = d["outside"]["etc"]
check(e["kind"] == "string" and e["path"] == "/var/lib/weir/cluster.yaml",
      "an absolute path string outside the store is linked, not copied")
check(d["outside"]["checks"] == [], "a file outside the store is not checked at build time")

# Defect 2: a derivation is a file, not YAML text naming its store path.
for case in ("derivation", "renamedDerivation"):
    e = d[case]["etc"]
    check(e["kind"] == "derivation" and e["name"] == "given.yaml" and e["text"] == "kind: Cluster\n",
          f"{case}: a derivation is the file itself")
    check(e["path"] in d[case]["checks"][0]["script"], f"{case}: the derivation is what is checked")

e = d["renamedText"]["etc"]
check(e["kind"] == "derivation" and e["text"] == "apiVersion: weir.io/v1\nkind: Cluster\n",
      "clusterConfig YAML text becomes a file with that text")
check(any("renamed to `services.weir.configFile'" in w for w in d["renamedText"]["warnings"]),
      "clusterConfig warns that it was renamed")

for case in ("renamedList", "settings", "noCheck"):
    c = d[case]
    text = c["etc"]["text"]
    ds = docs(text)
    check([x["kind"] for x in ds] == ["Cluster", "Dataset", "AlluxioRuntime"],
          f"{case}: a list of documents becomes one multi-document stream")
    check([n["address"] for n in ds[0]["spec"]["nodes"]] == ["10.0.0.1", "10.0.0.2", "fd00::3"],
          f"{case}: the values survive rendering")
check(docs(d["settings"]["etcText"])[0]["spec"]["tokenFile"] == "/var/lib/weir/token",
      "tokenFile goes into the Cluster document as spec.tokenFile (only the path)")
check("tokenFile" not in docs(d["noCheck"]["etc"]["text"])[0]["spec"], "no tokenFile without one")
check(d["noCheck"]["checks"] == [], "checkConfig = false: no build-time check")
check(len(d["settings"]["checks"]) == 1, "settings are checked at build time")
check(d["settings"]["node"] == "node2\n", "node goes to /etc/weir/node")



def build_check(case, text=None):
    """Runs the system.checks builder of CASE as the Nix build would (bash -e in an empty
    directory, the package's bin on PATH, $out to create), with the YAML it names written from
    its text. Returns (exit status, output)."""
    c = d[case]["checks"][0]
    y = c["yaml"]
    with tempfile.TemporaryDirectory() as tmp:
        given = os.path.join(tmp, "input.yaml")
        with open(given, "w") as f:
            f.write(y["text"] if text is None else text)
        work = os.path.join(tmp, "build")
        os.mkdir(work)
        env = dict(os.environ, PATH=os.path.join(pkg_root, "bin") + ":" + os.environ["PATH"],
                   out=os.path.join(tmp, "out"))
        p = subprocess.run(["bash", "-eo", "pipefail", "-c", c["script"].replace(y["path"], given)],
                           cwd=work, env=env, text=True, capture_output=True)
        made = os.path.exists(os.path.join(tmp, "out"))
        return (p.returncode if p.returncode or made else -1), p.stdout + p.stderr


rc, out = build_check("path", open(fixture).read())
check(rc == 0, f"path: the build-time check passes on the fixture ({out.strip()[-200:]})")
rc, out = build_check("settings")
check(rc == 0, f"settings: the build-time check passes ({out.strip()[-200:]})")
rc, out = build_check("example")
check(rc == 0 and d["example"]["failed"] == [],
      f"the settings option's example passes the build-time check ({out.strip()[-200:]})")
rc, out = build_check("badCheck")
check(rc != 0 and "blockSize must be a multiple of 4Ki" in out,
      f"a YAML weirctl rejects fails the build-time check, with its message ({out.strip()[-200:]})")

# Secrets by file: /etc/weir/cluster.yaml names them as written; weirctl reads them, so the
# build-time check (where they are neither in the store nor in the sandbox) checks a copy whose
# encryptOptions read a placeholder. Without that copy the check fails the system build.
sec = d["secrets"]
etc_docs = docs(sec["etc"]["text"])
check(etc_docs[1]["spec"]["sharedEncryptOptions"][0]["valueFile"] == "/var/lib/weir/s3/access-key"
      and etc_docs[1]["spec"]["mounts"][0]["encryptOptions"][0]["valueFrom"]["secretKeyRef"]
      == {"name": "s3", "key": "secret-key"},
      "secrets: /etc/weir/cluster.yaml names the secret files as written")
chk_docs = docs(sec["checks"][0]["yaml"]["text"])
check(chk_docs[1]["spec"]["sharedEncryptOptions"] == [{"name": "fs.s3a.access.key",
                                                        "valueFile": "weir-check-secret"}]
      and chk_docs[1]["spec"]["mounts"][0]["encryptOptions"] == [
          {"name": "fs.s3a.secret.key", "valueFile": "weir-check-secret"}]
      and chk_docs[1]["spec"]["mounts"][0]["options"] == {"fs.s3a.endpoint": "http://10.0.0.9:9000"},
      "secrets: the checked copy reads a placeholder for each secret file, the rest unchanged")
check(sec["dropins"]["weir-worker"]["restartTriggers"] != [sec["checks"][0]["yaml"]["path"]],
      "secrets: the units' triggers name the real YAML, not the checked copy")
rc, out = build_check("secrets")
check(rc == 0 and "api: https" in out and "read token file /var/lib/weir/read-token" in out,
      "secrets: the build-time check passes without the secret files (encryptOptions, token, Raft"
      f" secret, read token, TLS key, certificate and CA: HTTPS) ({out.strip()[-300:]})")
rc, out = build_check("secrets", sec["etc"]["text"])
check(rc != 0 and "cannot read secret file" in out,
      "secrets: checking the YAML itself at build time would fail (weirctl reads the secrets)")

# Drop-ins: additions to the packaged units, never replacements.
dr = d["settings"]["dropins"]
check(all(dr[u]["overrideStrategy"] == "asDropin" for u in dr), "every unit is a drop-in")
yaml_file = d["settings"]["checks"][0]["yaml"]["path"]
check(dr["weir-master"]["reloadTriggers"] == [yaml_file] and dr["weir-master"]["restartTriggers"] == [],
      "a changed YAML reloads the masters (SIGHUP), not restarts them")
check(dr["weir-worker"]["restartTriggers"] == [yaml_file]
      and dr["weir-fuse@"]["restartTriggers"] == [yaml_file], "workers and FUSE restart on a new YAML")
check(any(p.endswith("-fuse3") for p in dr["weir-fuse@"]["path"]), "fusermount3 on weir-fuse@'s PATH")
check(dr["weir-rescan"]["wantedBy"] == ["multi-user.target"], "weir-rescan is enabled")
check(d["disabled"] == {}, "enable = false sets nothing")

# Firewall: API ports open, Raft only from the other masters.
fw = d["settings"]["firewall"]
check(sorted(fw["allowedTCPPorts"]) == [19998, 29999], "API ports open")
check(19200 not in fw["allowedTCPPorts"], "the Raft port is not open to all")
check(fw["extraCommands"].splitlines() == [
    "iptables -A nixos-fw -p tcp -s 10.0.0.1 --dport 19200 -j nixos-fw-accept",
    "ip6tables -A nixos-fw -p tcp -s fd00::3 --dport 19200 -j nixos-fw-accept"],
    "iptables: Raft from the other two masters only (IPv4 and IPv6), not from itself")
nft = d["nftables"]
check(nft["extraCommands"] == "" and nft["extraInputRules"].splitlines() == [
    "ip saddr { 10.0.0.1, 10.0.0.2 } tcp dport 19200 accept"],
    "nftables: the same as one input rule, no iptables commands")
fw = d["settingsNoNode"]["firewall"]
rules = fw["extraCommands"].splitlines()
check(sorted(fw["allowedTCPPorts"]) == [19999, 29999], "the YAML's masterPort")
check(all(("-s 10.0.1.1 " not in r and "-s 10.0.1.4 " not in r) for r in rules) and len(rules) == 6,
      "node unknown: Raft from every master (placement and roles), on each master's Raft port")
check(d["settingsWorkerNode"]["firewall"]["extraCommands"] == "", "a worker-only node opens no Raft port")
check(d["fileFirewall"]["firewall"]["extraCommands"] == ""
      and any("raftPeers" in w for w in d["fileFirewall"]["warnings"]),
      "configFile: Raft stays closed, with a warning naming raftPeers")

check(any("Raft transport is not authenticated" in w for w in d["noCheck"]["warnings"])
      and not any("not authenticated" in w for w in d["settings"]["warnings"]),
      "three masters without tokenFile or raft.secretFile: a warning; with tokenFile none")
check(d["filePeers"]["firewall"]["extraCommands"].splitlines() == [
    "iptables -A nixos-fw -p tcp -s 10.0.0.2 --dport 19200 -j nixos-fw-accept",
    "iptables -A nixos-fw -p tcp -s 10.0.0.3 --dport 19200 -j nixos-fw-accept"]
    and d["filePeers"]["warnings"] == [],
    "configFile with raftPeers: Raft (default port) from those addresses only")

# Assertions for bad input, each with a message naming the option.
expect = {
    "both": "set either settings or configFile",
    "unknownNode": "services.weir.node: 'node9' is not one of the nodes",
    "noCluster": "exactly one document of kind Cluster",
    "duplicateNames": "node names must be unique",
    "tokenInStore": "services.weir.tokenFile: must be an absolute path outside the Nix store",
    "tokenRelative": "services.weir.tokenFile: must be an absolute path",
    "inlineSecret": "fs.s3a.secret.key",
    "raftSecretInStore": "spec.raft.secretFile of the Cluster document name a file in the Nix store",
    "hostNameMaster": "a.example b.example c.example",
    "sharedInlineSecret": "Dataset hbase, sharedOptions: fs.s3a.secret.key",
    "sharedValueFileInStore": "Dataset hbase, sharedOptions: fs.s3a.access.key",
}
for case, text in expect.items():
    got = d["bad"][case]["failed"]
    check(len(got) == 1 and text in got[0], f"bad input {case}: {got}")
for case in ("path", "outside", "derivation", "renamedText", "renamedList", "settings",
             "settingsNoNode", "noCheck", "secrets"):
    check(d[case]["failed"] == [], f"{case}: no assertion fails")
check(d["bad"]["textNotPath"].get("error") is True, "configFile = 42 is a type error")

# flake.nix (defects 3-5): nixos-26.05, pkgs.nixfmt, the module as a plain file.
f = d["flake"]
check(f["url"] == "github:NixOS/nixpkgs/nixos-26.05", f"nixpkgs input is nixos-26.05 ({f['url']})")
check(f["formatter"] == "nixfmt", "formatter is pkgs.nixfmt, not the deprecated alias")
check(f["moduleIsPath"] and f["module"] == os.path.join(src, "nix/module.nix"),
      "nixosModules.weir is nix/module.nix itself: no capture of the flake's self")
check(f["defaultIsWeir"], "packages.default is packages.weir")
check(sorted(f["checks"]) == ["appliance", "efi", "ha", "package"], f"checks: {f['checks']}")
check({"appliance-qemu", "appliance-raw-efi"} <= set(f["images"]),
      "the appliance images are system.build.images.{qemu,raw-efi}")

print(f"{len(failures)} failed" if failures else "all passed")
sys.exit(1 if failures else 0)
