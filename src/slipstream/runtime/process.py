"""Low-level process handling shared by the local driver and one-off commands.

Every user command runs as ``/bin/sh -c COMMAND`` in a new session (so it leads its own process
group and is not hit by signals aimed at the daemon's group or terminal), with stdin on
/dev/null and exactly the environment it was given.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

from slipstream.errors import InvalidInput
from slipstream.osusers import build_as_user
from slipstream.runtime.cgroups import wrap

# Two psutil create_times name the same process when they differ by less than half a clock tick.
CREATE_TIME_TOLERANCE_S = 0.005


def shell_argv(command: str) -> list[str]:
    """The argv that runs a user command."""
    return ["/bin/sh", "-c", command]


def open_log(path: Path) -> int:
    """Open ``path`` for appending (created 0640 with its directory) and return the raw fd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)


def spawn(
    command: str,
    cwd: Path,
    env: Mapping[str, str],
    stdout: int | IO[bytes],
    what: str,
    cgroup_procs: Path | Sequence[Path] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (first joining the cgroups whose ``cgroup.procs`` files
    are given, as root, then becoming ``user`` when given); raise InvalidInput when it cannot start at all."""
    if not Path(cwd).is_dir():
        raise InvalidInput(
            f"cannot start {what}: working directory {cwd} does not exist",
            "check rootDir and that the build is still on disk",
        )
    try:
        return subprocess.Popen(
            wrap(build_as_user(shell_argv(command), user), cgroup_procs),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise InvalidInput(f"cannot start {what}: {exc.strerror or exc}") from None


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a whole process group; False when no member is left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def child_has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once our child has exited, WITHOUT reaping it (its pid, and so its group, stays reserved)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped elsewhere
        return True
    return info is not None


def exit_code(returncode: int) -> int:
    """A Popen return code in shell convention: killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(code: int | None) -> str:
    """'exited with code 1', 'was killed by SIGKILL', 'exited (code unknown)'."""
    if code is None:
        return "exited (code unknown)"
    if code > 128:
        try:
            return f"was killed by {signal.Signals(code - 128).name}"
        except ValueError:
            pass
    return f"exited with code {code}"


def create_time_of(pid: int) -> float | None:
    """psutil's create_time of a live (non-zombie) process, or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def child_create_time(pid: int) -> float | None:
    """create_time of our own just-started child (an unreaped zombie still has one)."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def is_same_process(pid: int, create_time: float) -> bool:
    """True when ``pid`` is alive, not a zombie, and started at ``create_time``."""
    actual = create_time_of(pid)
    return actual is not None and abs(actual - create_time) < CREATE_TIME_TOLERANCE_S


def group_of(pid: int) -> int | None:
    """The process group of ``pid``, or None when it is gone."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def tree_rss(pid: int) -> int:
    """Resident memory in bytes of ``pid`` and all its descendants (0 when gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def live_group_members(pgid: int) -> list[int]:
    """The pids of group ``pgid``'s members that are not zombies (a scan of every process).

    ``killpg(pgid, 0)`` alone is not enough: zombies count as members, and an init that does not
    reap (as in some containers) leaves them around for good.
    """
    if not signal_group(pgid, 0):
        return []
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and is_live_member(int(name), pgid)]


def descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s children, their children and so on, from /proc/<pid>/task/*/children
    (a few reads; empty when the process is gone or the kernel lacks that file)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 4096:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def is_live_member(pid: int, pgid: int) -> bool:
    """True when ``pid`` exists, is in group ``pgid`` and is not a zombie (one file read)."""
    return member_state(pid, pgid) == "live"


def member_state(pid: int, pgid: int) -> str:
    """``"live"`` or ``"zombie"`` for a process of group ``pgid``; ``"gone"`` when ``pid`` is no
    process of that group (one file read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return "gone"
    fields = stat[stat.rfind(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
    if len(fields) < 3 or int(fields[2]) != pgid:
        return "gone"
    return "zombie" if fields[0] in (b"Z", b"X") else "live"


def readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` has data (or EOF) within ``timeout_s``. poll, not select: a daemon with a few
    hundred instances holds descriptors past select()'s limit of 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))
