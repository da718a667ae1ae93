"""What the scale benchmarks (master.py, walk.py) share: the ImageNet-shaped tree they sync and
walk (N sparse files of one size spread evenly over 1,000 class directories, names like
n00000042/n00000042_1234.JPEG; metadata is what is measured, so the files are made by truncate)
and a process's resident memory."""

import os
import shutil
import time

DIRS = 1000


def make_tree(root, n_files, file_size, marker=".scale-tree"):
    """Makes the tree under ROOT, or keeps it when a previous run left the same one (MARKER, a
    file in ROOT, holds the file count; a different size of file needs another MARKER)."""
    marker = os.path.join(root, marker)
    try:
        with open(marker) as f:
            if int(f.read()) == n_files:
                return
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    t = time.monotonic()
    for i in range(n_files):
        d = os.path.join(root, f"n{i % DIRS:08d}")
        if i < DIRS:
            os.mkdir(d)
        fd = os.open(os.path.join(d, f"n{i % DIRS:08d}_{i // DIRS}.JPEG"),
                     os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.ftruncate(fd, file_size)
        os.close(fd)
    with open(marker, "w") as f:
        f.write(str(n_files))
    print(f"# made {n_files} files in {DIRS} dirs in {time.monotonic() - t:.1f} s", flush=True)


def rss_bytes(pid):
    """VmRSS of process PID, in bytes (0 when /proc does not say)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
