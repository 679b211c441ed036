"""The runtime boundary: what an instance is, what its status says, and the driver protocol.

Lifecycle of an instance, as every driver implements it:

1. ``start(spec)`` launches ``spec.command`` with exactly ``spec.env``, in its own process group,
   output appended to ``spec.log_path``. The driver now supervises it.
2. While supervised, a crash (exit or vanish) is followed by ``BACKOFF`` and a restart with the
   same spec after an exponential delay; ``on_event`` tells the engine about each step.
3. ``stop(id)`` ends supervision: SIGTERM to the group, SIGKILL after the shutdown delay, then
   SIGKILL to anything else the instance started (its cgroups find ``setsid`` children too), and
   the driver forgets the instance.
4. ``close()`` ends supervision of everything *without* stopping anything: the apps keep serving
   while the daemon is down. A new driver takes them back with ``adopt(spec, pid, create_time)``;
   pid and process start time must both match, because a pid alone may have been reused.

Implementations: ``runtime.local.LocalDriver`` (real processes) and ``runtime.fake.FakeDriver``
(in memory, for engine and API tests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

# on_event(instance_id, kind, message); kind is "started", "exited", "restarted" or "stopped".
EventCallback = Callable[[str, str, str], None]


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to (re)start one instance of a service."""

    instance_id: str  # e.g. "web-d12-1"; also the name of its log file
    service: str
    deploy_id: int
    command: str  # user startCommand, run with /bin/sh -c in cwd
    cwd: Path
    env: Mapping[str, str]  # the complete environment (PORT included); nothing is inherited
    log_path: Path  # stdout and stderr are appended here
    port: int | None = None
    shutdown_delay_s: float = 30.0  # SIGTERM, then SIGKILL after this
    memory_limit_mb: int | None = None  # RSS of the whole process tree; exceeding it restarts
    cpus: float | None = None  # CPU cap in cores (the plan's; capped at the machine's cores)
    user: str | None = None  # the OS user it runs as (local driver; None: the daemon's own)
    # Containers (runtime.podman) only; the local driver ignores these.
    image: str | None = None  # image to run, pinned (``localhost/slipstream/web:b12``, ``repo@sha256:…``)
    container_port: int | None = None  # PORT inside the container, published on 127.0.0.1:port (10000)
    volumes: tuple[tuple[str, str], ...] = ()  # (host directory, mount path) pairs: persistent disks


class InstanceState(StrEnum):
    """Where a supervised instance is in its life."""

    RUNNING = "running"
    BACKOFF = "backoff"  # crashed; waiting to be restarted
    STOPPED = "stopped"


@dataclass(frozen=True)
class InstanceStatus:
    """A snapshot of one supervised instance."""

    instance_id: str
    state: InstanceState
    pid: int | None
    create_time: float | None  # psutil create_time of the process (pid reuse safety)
    restarts: int  # restarts after crashes so far
    last_exit_code: int | None  # 128+N when killed by signal N; None when unknown (adopted)
    next_restart_in_s: float | None  # set in BACKOFF
    last_event: str | None  # e.g. "exited with code 1; restarting in 4 s"


class Driver(Protocol):
    """Starts, watches and stops instances; runs one-off commands."""

    def start(self, spec: InstanceSpec) -> InstanceStatus:
        """Launch a new instance and supervise it."""
        ...

    def stop(self, instance_id: str, timeout: float | None = None) -> None:
        """SIGTERM the instance's process group, SIGKILL after ``timeout``, then forget it."""
        ...

    def signal(self, instance_id: str, sig: int) -> None:
        """Send ``sig`` to the instance's process group."""
        ...

    def inspect(self, instance_id: str) -> InstanceStatus:
        """The status of one instance; raises ``errors.NotFound``."""
        ...

    def list(self) -> list[InstanceStatus]:
        """The status of every supervised instance, by id."""
        ...

    def adopt(self, spec: InstanceSpec, pid: int, create_time: float) -> bool:
        """Supervise an already running process again; False when it is gone or not the same one."""
        ...

    def close(self) -> None:
        """Stop supervising; instances keep running."""
        ...

    def run_once(
        self,
        command: str,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        *,
        image: str | None = None,
        user: str | None = None,
        memory_limit_mb: int | None = None,
        cpus: float | None = None,
    ) -> int:
        """Run a one-off shell command to completion; its exit code (124 on timeout, 130 when
        ``cancel`` was set). With ``image``, in a new container of that image; else as OS ``user``
        (None: the daemon's own). ``memory_limit_mb`` and ``cpus`` cap it as they cap an instance."""
        ...
