"""The HAProxy process itself: find the one we started, launch a new one, stop it.

HAProxy runs daemonised (``haproxy -D``), in its own session, so it outlives the slipstream daemon.
It is recognised later by its pidfile, and only if that pid is a live (not zombie) ``haproxy``
process whose command line names our config file: a stale pidfile or a recycled pid never counts.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from slipstream import runner
from slipstream.errors import CommandFailed, Conflict, InvalidInput

# HAProxy 2.6: "Binding [f.cfg:18] for frontend x: cannot bind socket (...) for [127.0.0.1:4001]"
_BIND_FAILED = re.compile(r"cannot bind socket \(Address already in use\) for \[([^\]]+)\]")


def build_argv(haproxy: str, config: Path, pidfile: Path) -> list[str]:
    """The command that starts HAProxy as a daemon with its own pidfile."""
    return [haproxy, "-D", "-f", str(config), "-p", str(pidfile)]


def read_pid(pidfile: Path) -> int | None:
    """The first pid in ``pidfile``, or None if it is missing or unreadable."""
    try:
        first = pidfile.read_text().split()
        return int(first[0]) if first else None
    except (OSError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def find_running(pidfile: Path, config: Path) -> int | None:
    """The pid of the live HAProxy started from ``config`` (per ``pidfile``), or None."""
    pid = read_pid(pidfile)
    if pid is None or not is_alive(pid):
        return None
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if "haproxy" not in name or str(config) not in cmdline:
        return None
    return pid


def check_port_free(bind_host: str, port: int) -> None:
    """Raise :class:`Conflict` if another program already listens on ``bind_host:port``."""
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy does
        try:
            sock.bind((bind_host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(
                    f"port {port} is in use by another program on {bind_host}",
                    "stop that program, or choose another port with SLIPSTREAM_HTTP_PORT",
                ) from None
            if exc.errno == errno.EACCES:
                raise InvalidInput(
                    f"port {port} needs more privileges than slipstream has",
                    "choose a port above 1023 with SLIPSTREAM_HTTP_PORT",
                ) from None
            raise InvalidInput(
                f"cannot listen on {bind_host}:{port}: {exc.strerror}", "check SLIPSTREAM_BIND and SLIPSTREAM_HTTP_PORT"
            ) from None


def launch(haproxy: str, config: Path, pidfile: Path, port: int, timeout: float = 10.0) -> int:
    """Start HAProxy as a daemon and return its pid (listeners and socket are bound on return)."""
    result = runner.run(build_argv(haproxy, config, pidfile), check=False, timeout=timeout + 20)
    if result.returncode != 0:
        alerts = [line for line in result.stderr.splitlines() if "ALERT" in line]
        detail = (alerts or result.stderr.strip().splitlines() or ["no output"])[0]
        if "cannot bind socket" in result.stderr and "Address already in use" in result.stderr:
            where = _BIND_FAILED.search(result.stderr)
            if where is None or where.group(1).endswith(f":{port}"):
                raise Conflict(
                    f"port {port} is in use by another program",
                    "stop that program, or choose another port with SLIPSTREAM_HTTP_PORT",
                )
            raise Conflict(
                f"{where.group(1)} is in use by another program", "stop that program, then start the proxy again"
            )
        raise CommandFailed(f"haproxy did not start: {detail.split(': ', 1)[-1]}", f"check {config}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = find_running(pidfile, config)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise CommandFailed(
        f"haproxy started but its pidfile {pidfile} names no live process", "check the system log for haproxy errors"
    )


@dataclass(frozen=True)
class ProxyUser:
    """The unprivileged user HAProxy drops to after binding (its group has the same name)."""

    name: str
    uid: int
    gid: int


def open_access_log(socket_path: Path, gid: int) -> None:
    """Let HAProxy's group send to the access-log socket (0620) through its directory (0711): it
    sends each line by path, as its own user. The socket is re-made at every daemon start, so
    this runs at each start, adopted HAProxy or not."""
    os.chmod(socket_path.parent, 0o711)
    if socket_path.exists():
        os.chown(socket_path, os.geteuid(), gid, follow_symlinks=False)
        os.chmod(socket_path, 0o620)


def terminate(pid: int, grace: float = 10.0) -> None:
    """Stop HAProxy: soft stop (SIGUSR1) for up to ``grace`` s, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGUSR1, grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_alive(pid):
                return
            time.sleep(0.02)
    raise CommandFailed(f"haproxy (pid {pid}) did not exit after SIGKILL")
