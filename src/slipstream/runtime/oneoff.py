"""One-off commands (buildCommand, preDeployCommand, cron runs): run to completion, stream output.

Lifecycle of a run:

1. ``/bin/sh -c COMMAND`` starts in its own process group (as the service's user when given:
   ``setpriv`` first, see ``osusers``); stdout and stderr share one pipe. Given ``cgroups``, it
   first joins a cgroup set of its own (the plan's memory cap and CPU share, the process limit).
2. Each complete line is appended to the log file and passed to ``on_output`` as it arrives.
3. When the command's own process exits, whatever it left behind in its group is killed (a stray
   background process would otherwise hold the pipe open forever), and so is everything left in
   its cgroups (``setsid`` children too); then the pipe is drained and the cgroups are removed.
4. At the deadline the group gets SIGTERM, then SIGKILL after a short grace; the result is 124,
   like coreutils ``timeout``. Killed by signal N otherwise reads as 128+N.
5. When ``cancel`` is set (a deploy was canceled) the group is killed the same way and the result
   is 130, as for an interrupted command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import psutil

from slipstream.runtime.cgroups import OneOffCgroups
from slipstream.runtime.process import child_has_exited, exit_code, readable, signal_group, spawn

TIMEOUT_EXIT_CODE = 124
CANCELED_EXIT_CODE = 130
MAX_LINE_BYTES = 64 * 1024  # a longer run without a newline is passed on in pieces


def run_command(
    command: str,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float | None = None,
    on_output: Callable[[str], None] | None = None,
    *,
    kill_grace_s: float = 2.0,
    drain_s: float = 2.0,
    cancel: threading.Event | None = None,
    user: str | None = None,
    cgroups: OneOffCgroups | None = None,
    memory_limit_mb: int | None = None,
    cpus: float | None = None,
) -> int:
    """Run ``command`` (as OS ``user`` when given; in cgroups of its own with ``cgroups``, capped at
    ``memory_limit_mb`` and ``cpus`` when given) to completion and return its exit code (124 on
    timeout, 130 when canceled)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    confined = _own_cgroups(cgroups, memory_limit_mb, cpus)
    with confined as (procs, sweep_leftovers), open(log_path, "ab", buffering=0) as log:
        proc = spawn(command, cwd, env, subprocess.PIPE, "command", cgroup_procs=procs, user=user)
        assert proc.stdout is not None
        lines = _LineSplitter(log, on_output)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        timed_out = canceled = False
        term_sent_at: float | None = None
        drain_until: float | None = None  # set once the leader has exited
        eof: float | None = None  # when the pipe reached end of file
        fd = proc.stdout.fileno()
        try:
            while True:
                now = time.monotonic()
                if drain_until is None and child_has_exited(proc):
                    signal_group(proc.pid, signal.SIGKILL)  # leftovers; the pid is not reaped yet
                    sweep_leftovers()  # and what left the group (setsid), so the pipe closes too
                    proc.wait()
                    drain_until = now + drain_s
                elif drain_until is None and (
                    (deadline is not None and now >= deadline) or (cancel is not None and cancel.is_set())
                ):
                    if term_sent_at is None:
                        canceled = cancel is not None and cancel.is_set()
                        timed_out, term_sent_at = not canceled, now
                        signal_group(proc.pid, signal.SIGTERM)
                    elif now - term_sent_at >= kill_grace_s:
                        signal_group(proc.pid, signal.SIGKILL)
                if drain_until is not None and (eof is not None or now >= drain_until):
                    break  # all output read, or someone outside the group still holds the pipe
                if eof is not None:  # output closed; usually the command is just exiting
                    time.sleep(0.005 if now - eof < 1.0 else 0.05)
                    continue
                if readable(fd, 0.05):
                    chunk = os.read(fd, 65536)
                    if chunk:
                        lines.feed(chunk)
                    else:
                        eof = now
        finally:
            if proc.returncode is None and not child_has_exited(proc):
                signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            lines.close()
    if canceled:
        return CANCELED_EXIT_CODE
    return TIMEOUT_EXIT_CODE if timed_out else exit_code(proc.returncode)


@contextmanager
def _own_cgroups(
    cgroups: OneOffCgroups | None, memory_limit_mb: int | None, cpus: float | None
) -> Iterator[tuple[list[Path], Callable[[], object]]]:
    """A run's ``cgroup.procs`` files and the sweep of its cgroups; swept and removed at the end."""
    if cgroups is None:
        yield [], lambda: 0
        return
    name, procs = cgroups.prepare(memory_limit_mb, cpus)
    try:
        yield procs, lambda: cgroups.sweep(name)
    finally:
        cgroups.remove(name)


class _LineSplitter:
    """Cuts a byte stream into lines for the log file and the output callback."""

    def __init__(self, log: IO[bytes], on_output: Callable[[str], None] | None) -> None:
        self._log = log
        self._on_output = on_output
        self._buf = b""

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while b"\n" in self._buf or len(self._buf) >= MAX_LINE_BYTES:
            cut = self._buf.find(b"\n")
            if cut < 0 or cut >= MAX_LINE_BYTES:
                line, self._buf = self._buf[:MAX_LINE_BYTES], self._buf[MAX_LINE_BYTES:]
            else:
                line, self._buf = self._buf[:cut], self._buf[cut + 1 :]
            self._emit(line)

    def close(self) -> None:
        if self._buf:
            line, self._buf = self._buf, b""
            self._emit(line)

    def _emit(self, line: bytes) -> None:
        self._log.write(line + b"\n")
        if self._on_output is not None:
            self._on_output(line.decode("utf-8", errors="replace").rstrip("\r"))


def end_leftovers(root: Path, keep_sessions: set[int]) -> list[str]:
    """After a daemon restart: kill the process groups of one-off commands (a build, a pre-deploy,
    a cron run) the previous daemon left running, i.e. of every process working under ``root`` (the
    builds) outside ``keep_sessions`` (the live instances') and this daemon's own session. What was
    killed, as ``pid command`` lines."""
    ended = []
    own = os.getsid(0)
    for p in psutil.process_iter(["cwd", "cmdline"]):
        cwd = p.info["cwd"]
        if not cwd or not Path(cwd).is_relative_to(root):
            continue
        try:
            sid, pgid = os.getsid(p.pid), os.getpgid(p.pid)
        except OSError:  # gone meanwhile
            continue
        if sid in keep_sessions or sid == own:
            continue
        signal_group(pgid, signal.SIGKILL)
        ended.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])}")
    return ended
