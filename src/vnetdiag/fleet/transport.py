"""How an agent is reached: ``ssh [options] DEST vnetdiag agent ...`` (or a local process).

No daemon listens on the hosts: each diagnose starts one agent per host through
the access operators already have (their ssh keys, their access control, their
jump hosts in ``-o ProxyCommand``/``ProxyJump``) and ends it with the session.
``AgentProcess`` owns the child: lines in, lines out, its stderr kept for the
one-line error when it fails, and it is killed if it does not leave on its own.

Exit statuses of ssh tell the failures apart: 255 is ssh's own (the host is
unreachable, the key is refused), 127 is the remote shell's "command not
found" (no vnetdiag there).
"""

from __future__ import annotations

import collections
import queue
import shlex
import subprocess
import sys
import threading
from collections.abc import Sequence

from vnetdiag.errors import BadInputError, MissingFeatureError, VnetdiagError
from vnetdiag.model.fleet import Host

_STDERR_LINES = 20


class HostUnreachable(BadInputError):
    """ssh could not log in to the host."""


class AgentMissing(MissingFeatureError):
    """The host has no vnetdiag (or not where the hosts file says)."""


class AgentDied(VnetdiagError):
    """The agent exited or the connection dropped while the coordinator needed it."""

    exit_status = 3


def agent_args(host: Host, *, debug: bool = False) -> list[str]:
    args = ["agent"]
    for glob in host.netns:
        args += ["--netns", glob]
    return args + (["--debug"] if debug else [])


class SshTransport:
    """``ssh -T -o BatchMode=yes ... DEST -- vnetdiag agent --netns GLOB ...``"""

    def __init__(self, host: Host, *, ssh: str = "ssh", connect_timeout_s: float = 10.0) -> None:
        self.host = host
        self.ssh = ssh
        self.connect_timeout_s = connect_timeout_s

    def argv(self) -> list[str]:
        h = self.host
        # BatchMode: never ask for a password on a terminal the coordinator owns;
        # ServerAlive: a host that vanishes mid-run is noticed within ~15 s.
        opts = ["-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(self.connect_timeout_s))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if h.port:
            opts += ["-p", str(h.port)]
        # vnetdiag_command is words ("sudo -n /opt/vnetdiag/bin/vnetdiag"), as for the local transport.
        remote = shlex.join([*shlex.split(h.command), *agent_args(h)])
        return [self.ssh, *opts, *h.ssh_options, h.destination, "--", remote]

    @property
    def what(self) -> str:
        return f"ssh {self.host.destination}"


class LocalTransport:
    """The agent as a child process on this machine (tests, and one-host fleets)."""

    def __init__(self, host: Host, *, command: Sequence[str] | None = None) -> None:
        self.host = host
        self.command = list(command) if command is not None else (
            shlex.split(host.command) if host.command != "vnetdiag" else [sys.executable, "-m", "vnetdiag.cli.main"])

    def argv(self) -> list[str]:
        return [*self.command, *agent_args(self.host)]

    @property
    def what(self) -> str:
        return "a local agent"


def transport_for(host: Host):
    """ssh for a host with a destination, a local process for ``local``."""
    return LocalTransport(host) if host.destination in ("local", "") else SshTransport(host)


class AgentProcess:
    """The running transport: write lines, read lines (with a deadline), stop."""

    def __init__(self, transport) -> None:
        self.transport = transport
        self.host = transport.host
        try:
            self.proc = subprocess.Popen(transport.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError as exc:
            raise MissingFeatureError(f"cannot start {transport.what}: {exc.filename} is not installed",
                                      hint="apt-get install openssh-client") from None
        self.said_hello = False
        """Set by the session once the agent said hello: a failure after it is the agent dying."""
        self.stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_out, daemon=True, name=f"agent-out-{self.host.name}").start()
        self._err_thread = threading.Thread(target=self._read_err, daemon=True, name=f"agent-err-{self.host.name}")
        self._err_thread.start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self.failure("the connection closed") from None

    def readline(self, timeout_s: float | None) -> bytes:
        """The next line; AgentDied at end of output, TimeoutError after ``timeout_s``."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError from None
        if line is None:
            self._lines.put(None)  # later reads see the end too
            raise self.failure("it closed its output")
        return line

    def failure(self, what: str) -> VnetdiagError:
        """The one-line error for an agent that is gone (waits briefly for its status)."""
        try:
            status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            status = None
        self._err_thread.join(timeout=1)
        said = next((s for s in reversed(self.stderr) if s.strip()), "")
        name = self.host.name
        if self.said_hello:
            pass  # it was up: whatever ssh's status, the agent died (below)
        elif status == 255 and isinstance(self.transport, SshTransport):
            dest = f" ({self.host.destination})" if self.host.destination != name else ""
            return HostUnreachable(f"cannot reach {name}{dest}: {said or 'ssh failed'}",
                                   hint="check the address, the key (ssh -v) and that sshd runs there")
        elif status == 127 or "command not found" in said or "No such file or directory" in said:
            return AgentMissing(f"vnetdiag is not installed on {name} ({self.host.command}: not found)",
                                hint="install vnetdiag there, or give its path as vnetdiag_command in the hosts file")
        if status == 255 and isinstance(self.transport, SshTransport):
            how = "was lost (killed, or the connection dropped)"
        elif status is not None and status < 0:
            how = f"was killed by signal {-status}"
        elif status is not None:
            how = f"exited with status {status}"
        else:
            how = "stopped answering"
        tail = f": {said}" if said else ""
        return AgentDied(f"the agent on {name} {how} ({what}){tail}",
                         hint=f"rerun; check {name} with: ssh {self.host.destination} {self.host.command} agent --help")

    def close(self, timeout_s: float = 5.0) -> int | None:
        """Close its input (the agent stops what it started and exits); kill it if it lingers."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
