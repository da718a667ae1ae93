"""The one process wrapper of the integration tests: every daemon a test starts is a Daemon.

A Daemon runs command() in its own session (process group, so that stop() and kill() reach the
workers nginx or Apache fork), appends its output to log_path, waits until it is ready
(listening on address:port by default; subclasses override ready() for a mount) and is stopped
with SIGTERM, then SIGKILL after a timeout. Every Daemon is a context manager, and stop() is
safe to call twice and after a failed start, so fixture finalizers may always call it.

    d = MyDaemon(...)      # subclasses set log_path, address, port and define command()
    d.start()              # raises with the log's tail when the process exits or never listens
    d.kill()               # SIGKILL, as a crash would
    d.restart()            # stop, then start again with the same command
    d.stop()               # the exit status (negative: killed by that signal)
"""

import os
import signal
import subprocess
import time

from weirtest.net import wait_listening

# No system bus in tests unless one is given: keeps the daemons' bus lookup from hanging.
NO_BUS = "unix:path=/nonexistent/weir-test-bus"


def weir_env(extra=None, log_level=None):
    """The environment of a weir daemon under test: ours without NOTIFY_SOCKET, no system bus
    unless EXTRA names one, then EXTRA."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.setdefault("DBUS_SYSTEM_BUS_ADDRESS", NO_BUS)
    if log_level:
        env.setdefault("WEIR_LOG_LEVEL", log_level)
    env.update(extra or {})
    return env


class Daemon:
    """Base of every process the tests start. Subclasses define command() and may override
    environment(), ready() and error_log()."""

    what = "process"        # named in errors
    ready_timeout = 15.0    # seconds start() waits for ready()
    stop_timeout = 10.0     # seconds stop() waits after SIGTERM

    def __init__(self, log_path, address=None, port=None, cwd=None):
        self.log_path = log_path
        self.address = address
        self.port = port
        self.cwd = cwd
        self.proc = None

    # -- what subclasses define --

    def command(self):
        raise NotImplementedError

    def environment(self):
        """The child's environment; None inherits ours."""
        return None

    def ready(self):
        """Returns once the daemon serves; raises if it exits first. Default: it listens on
        address:port (nothing to wait for without a port)."""
        if self.port:
            wait_listening(self.address, self.port, self.proc, timeout=self.ready_timeout,
                           what=self.what, log=self.error_log())

    def error_log(self):
        """The file whose tail explains a failed start."""
        return self.log_path

    # -- lifecycle --

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def alive(self):
        return self.running

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True):
        assert not self.running, f"{self.what} already running"
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=self.cwd, env=self.environment())
        if wait:
            try:
                self.ready()
            except BaseException:
                self.kill()
                raise
        return self

    def signal(self, sig):
        """Sends SIG to the whole process group, if it still runs."""
        if self.running:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _reap_group(self):
        # forked workers (nginx, Apache) may outlive their parent: none is left
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout=None):
        """SIGTERM and wait; SIGKILL if it does not exit in TIMEOUT seconds. Returns the exit
        status (None if it never started)."""
        if self.proc is None:
            return None
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._reap_group()
        return self.proc.returncode

    def kill(self):
        """SIGKILL, as a crash would; waits for the process."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reap_group()

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    def log(self, tail=None):
        """The log so far ("" when there is none); its last TAIL characters when given."""
        try:
            with open(self.log_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        return text[-tail:] if tail else text

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class DbusDaemon(Daemon):
    """A private dbus-daemon in DIR standing in for the system bus: give `address` to the
    daemons as DBUS_SYSTEM_BUS_ADDRESS and to busctl as --address. Its policy lets anyone own,
    call and receive anything (the tests' daemons run as root or as the test's user)."""

    what = "dbus-daemon"
    CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{type}</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

    def __init__(self, dir, bus_type="custom"):
        os.makedirs(dir, exist_ok=True)
        super().__init__(os.path.join(dir, "dbus-daemon.log"))
        self.socket = os.path.join(dir, "bus.sock")
        self.conf = os.path.join(dir, "bus.conf")
        self.bus_type = bus_type
        self.address = f"unix:path={self.socket}"

    def command(self):
        with open(self.conf, "w") as f:
            f.write(self.CONFIG.format(type=self.bus_type, socket=self.socket))
        return ["dbus-daemon", f"--config-file={self.conf}", "--nofork", "--nopidfile"]

    def ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dbus-daemon did not start: {self.log(4000)}")
            time.sleep(0.05)
