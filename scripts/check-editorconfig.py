#!/usr/bin/python3
"""Checks tracked text files against .editorconfig: LF endings, a final newline, no trailing
whitespace, spaces (not tabs) for indentation except in Makefiles. Prints each violation as
FILE:LINE: what; exit 1 if there is any."""

import subprocess
import sys

BINARY_SUFFIXES = (".png", ".gz", ".qcow2", ".raw")


def main():
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    bad = 0
    for path in filter(None, files):
        if path.endswith(BINARY_SUFFIXES) or "/fixtures/" in path:
            continue  # fixtures are captured server output, kept byte for byte
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        if b"\0" in data:
            continue
        if data and not data.endswith(b"\n"):
            print(f"{path}: no newline at end of file")
            bad += 1
        tabs_ok = path.endswith("Makefile") or path.endswith(".mk")
        for n, line in enumerate(data.split(b"\n"), 1):
            if line.endswith(b"\r"):
                print(f"{path}:{n}: CRLF line ending")
                bad += 1
            elif line.rstrip(b" \t") != line:
                print(f"{path}:{n}: trailing whitespace")
                bad += 1
            if not tabs_ok and line.startswith(b"\t") and path.endswith((".c", ".h", ".py",
                                                                          ".build", ".nix")):
                print(f"{path}:{n}: tab indentation (use spaces)")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
