"""The master's loop thread scheduling (spec.raft.loopScheduling, docs/master.md): with the right
to use real-time priority the loop thread alone (and libuv's pool, which must inherit it) runs
SCHED_RR, while the API's threads keep normal scheduling; without it (no CAP_SYS_NICE, RLIMIT_RTPRIO
0) the master says so once, clearly, and runs at normal priority; `normal` asks for nothing.

Run inside a private network namespace (COMMON.md): the masters use 127.0.1.x."""

import os
import shutil

import pytest

SCHED_OTHER, SCHED_RR = 0, 2


def policies(pid):
    """{tid: (comm, scheduling policy)} of process PID's threads (/proc/PID/task/TID/stat
    field 41)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue  # a thread that ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (comm, int(fields[38]))  # field 41 counts from 1, with pid and comm
    return out


def can_realtime():
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def test_only_the_loop_thread_is_real_time(make_cluster):
    if not can_realtime():
        pytest.skip("this process may not use SCHED_RR (no CAP_SYS_NICE / RLIMIT_RTPRIO)")
    c = make_cluster(n=1)
    c.start()
    c.wait_leader()
    m = c.masters[0]
    assert "The loop thread runs with real-time scheduling (SCHED_RR 1)." in m.log()
    threads = policies(m.pid)
    main = threads.pop(m.pid)
    assert main[1] == SCHED_RR, main  # the loop runs on the main thread
    others = {comm for comm, pol in threads.values() if pol == SCHED_OTHER}
    rt = {comm for comm, pol in threads.values() if pol != SCHED_OTHER}
    assert others, threads  # the HTTP threads, the prober, ...
    # real time besides the loop: only libuv's pool ("libuv-worker"), which must inherit it
    assert rt <= {"libuv-worker", "weir-master"}, threads
    assert sum(1 for comm, pol in threads.values()
               if pol != SCHED_OTHER and comm == "weir-master") <= 4, threads


def test_without_the_right_the_master_runs_normal_and_says_so(make_cluster):
    if shutil.which("setpriv") is None or shutil.which("prlimit") is None:
        pytest.skip("setpriv and prlimit (util-linux) are needed")
    c = make_cluster(n=1)
    m = c.masters[0]
    command = m.command
    # no CAP_SYS_NICE (also out of the bounding set: root gets it back at exec otherwise) and
    # RLIMIT_RTPRIO 0: sched_setscheduler(SCHED_RR) fails with EPERM
    m.command = lambda: ["prlimit", "--rtprio=0:0", "--", "setpriv", "--inh-caps=-sys_nice",
                         "--bounding-set=-sys_nice", "--"] + command()
    c.start()
    c.wait_leader()
    log = m.log()
    assert "Cannot give the loop thread real-time scheduling" in log, log[-2000:]
    assert "spec.raft.loopScheduling: normal" in log
    assert "runs with real-time scheduling" not in log
    pols = policies(m.pid)
    assert all(pol == SCHED_OTHER for _, pol in pols.values()), pols


def test_normal_asks_for_nothing(make_cluster):
    c = make_cluster(n=1, raft_options={"loopScheduling": "normal"})
    c.start()
    c.wait_leader()
    m = c.masters[0]
    log = m.log()
    assert "real-time scheduling" not in log, log[-2000:]
    pols = policies(m.pid)
    assert all(pol == SCHED_OTHER for _, pol in pols.values()), pols
