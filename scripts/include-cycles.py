#!/usr/bin/env python3
"""Include cycles between the files of each daemon (docs/design.md: "Inside one daemon the include
graph has no cycle").

A module is X.c with X.h (X-internal.h counts as X); module A depends on module B when a file of A
includes "B.h" or "B-internal.h" from the same directory. Prints each cycle (a strongly connected
set of modules, with the includes that join them) and exits 1 when there is one. A header that
declares a function defined in another module's .c hides such a dependency (the old worker.h
declared api_start, fdsock_new, reg_start...): that is reported and fails too, unless the function
carries the header's module prefix (one module in several files: ctl.h and ctl-*.c).

    scripts/include-cycles.py [DIR ...]     (default: services/master services/worker services/fuse
                                             services/ctl services/generator)
"""

import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(name):
    base = name.rsplit(".", 1)[0]
    return base[: -len("-internal")] if base.endswith("-internal") else base


def graph(directory):
    files = [f for f in os.listdir(directory) if f.endswith((".c", ".h"))]
    local = {f for f in files if f.endswith(".h")}
    edges = {}
    for f in files:
        with open(os.path.join(directory, f), encoding="utf-8") as fh:
            for inc in INCLUDE.findall(fh.read()):
                if inc in local and module_of(inc) != module_of(f):
                    edges.setdefault(module_of(f), {}).setdefault(module_of(inc), []).append(
                        f"{f} -> {inc}")
        edges.setdefault(module_of(f), {})
    return edges


PROTO = re.compile(r"^[A-Za-z_][\w \t*]*?\b(\w+)\([^;{]*?\)\s*;", re.M)
DEFINITION = re.compile(r"^[A-Za-z_][\w \t*]*?\b(\w+)\([^;{]*?\)\s*\n\{", re.M)


def misplaced(directory):
    """(header, function, defining file) for prototypes whose definition is in another module."""
    defined = {}
    files = sorted(f for f in os.listdir(directory) if f.endswith((".c", ".h")))
    for f in files:
        if f.endswith(".c"):
            with open(os.path.join(directory, f), encoding="utf-8") as fh:
                for name in DEFINITION.findall(fh.read()):
                    defined.setdefault(name, f)
    out = []
    for f in files:
        if f.endswith(".h"):
            with open(os.path.join(directory, f), encoding="utf-8") as fh:
                for name in PROTO.findall(fh.read()):
                    where = defined.get(name)
                    # a module may span files (ctl.h and ctl-*.c): its functions carry its prefix
                    prefix = module_of(f).replace("-", "_") + "_"
                    if where and module_of(where) != module_of(f) and not name.startswith(prefix):
                        out.append((f, name, where))
    return out


def cycles(edges):
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = sys.argv[1:] or [os.path.join(root, "services", d)
                            for d in ("master", "worker", "fuse", "ctl", "generator")]
    bad = 0
    for d in dirs:
        if not os.path.isdir(d):
            continue
        edges = graph(d)
        for comp in cycles(edges):
            bad += 1
            print(f"{os.path.relpath(d, root)}: cycle between {', '.join(comp)}:")
            for a in comp:
                for b, why in sorted(edges[a].items()):
                    if b in comp:
                        print(f"    {'; '.join(why)}")
        wrong = misplaced(d)
        for header, name, where in wrong:
            bad += 1
            print(f"{os.path.relpath(d, root)}: {header} declares {name}(), defined in {where}")
        if not cycles(edges) and not wrong:
            print(f"{os.path.relpath(d, root)}: no include cycle ({len(edges)} modules)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
