"""An in-memory driver for engine and API tests: same protocol, no processes.

``FakeHost`` plays the machine: its "processes" outlive a ``FakeDriver``, so a test can close one
driver and let a new one ``adopt`` them, as after a daemon restart. Tests steer it with
``crash()``, ``restart()``, ``host.vanish()``, ``fail_start`` and ``run_once_results``, and read
what happened from ``calls``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput, NotFound, Unavailable
from slipstream.runtime.backoff import BackoffPolicy, plan_restart, render_restart
from slipstream.runtime.base import EventCallback, InstanceSpec, InstanceState, InstanceStatus


@dataclass
class FakeProcess:
    """A pretend process on a FakeHost."""

    pid: int
    create_time: float
    spec: InstanceSpec
    alive: bool = True
    signals: list[int] = field(default_factory=list)


class FakeHost:
    """The pretend machine: pids and start times that outlive any one driver."""

    def __init__(self) -> None:
        self.processes: dict[int, FakeProcess] = {}
        self._pids = itertools.count(10_000)
        self._lock = threading.Lock()

    def spawn(self, spec: InstanceSpec) -> FakeProcess:
        """Create a live pretend process for ``spec``."""
        with self._lock:
            pid = next(self._pids)
            proc = FakeProcess(pid, 1_700_000_000.0 + pid / 100, spec)
            self.processes[pid] = proc
            return proc

    def vanish(self, pid: int) -> None:
        """Make a process disappear (e.g. killed while the daemon was down)."""
        self.processes[pid].alive = False

    def is_alive(self, pid: int, create_time: float) -> bool:
        """True when ``pid`` lives and started at ``create_time``."""
        proc = self.processes.get(pid)
        return proc is not None and proc.alive and proc.create_time == create_time

    def running(self) -> list[FakeProcess]:
        """Every live pretend process."""
        return [p for p in self.processes.values() if p.alive]


class FakeDriver:
    """Implements the driver protocol in memory."""

    def __init__(
        self,
        on_event: EventCallback | None = None,
        *,
        host: FakeHost | None = None,
        policy: BackoffPolicy | None = None,
    ) -> None:
        self.on_event = on_event
        self.host = host or FakeHost()
        self.policy = policy or BackoffPolicy()
        self.calls: list[tuple[object, ...]] = []
        self.run_once_users: list[str | None] = []  # the OS user each one-off command was given
        self.run_once_limits: list[tuple[int | None, float | None]] = []  # and its (memory MB, cpus)
        self.fail_start: set[str] = set()  # start commands that fail to launch (InvalidInput)
        # command -> exit code, or a callable(command, env) -> exit code; unknown commands exit 0
        self.run_once_results: dict[str, int | Callable[[str, Mapping[str, str]], int]] = {}
        self.run_once_output: dict[str, list[str]] = {}  # command -> lines it prints
        self.run_once_seconds: dict[str, float] = {}  # command -> how long it runs
        self.closed = False
        self._status: dict[str, InstanceStatus] = {}
        self._specs: dict[str, InstanceSpec] = {}
        self._lock = threading.RLock()

    # -- protocol ------------------------------------------------------------------------------
    def start(self, spec: InstanceSpec) -> InstanceStatus:
        """Pretend to launch an instance."""
        with self._lock:
            self.calls.append(("start", spec.instance_id))
            if self.closed:
                raise Unavailable("the runtime driver is closed")
            if spec.instance_id in self._status:
                raise Conflict(f"instance {spec.instance_id} is already supervised")
            if spec.command in self.fail_start:
                raise InvalidInput(f"cannot start instance {spec.instance_id}: {spec.command!r} failed")
            proc = self.host.spawn(spec)
            status = InstanceStatus(
                spec.instance_id,
                InstanceState.RUNNING,
                proc.pid,
                proc.create_time,
                0,
                None,
                None,
                f"started (pid {proc.pid})",
            )
            self._status[spec.instance_id] = status
            self._specs[spec.instance_id] = spec
        self._emit(spec.instance_id, "started", status.last_event or "")
        return status

    def stop(self, instance_id: str, timeout: float | None = None) -> None:
        """Pretend to stop an instance and forget it."""
        with self._lock:
            self.calls.append(("stop", instance_id, timeout))
            status = self._get(instance_id)
            if status.pid is not None:
                self.host.processes[status.pid].alive = False
            del self._status[instance_id]
            self._specs.pop(instance_id, None)
        self._emit(instance_id, "stopped", "stopped")

    def signal(self, instance_id: str, sig: int) -> None:
        """Record a signal sent to a running instance."""
        with self._lock:
            self.calls.append(("signal", instance_id, sig))
            status = self._get(instance_id)
            if status.pid is None:
                raise Conflict(f"instance {instance_id} is not running ({status.state})")
            self.host.processes[status.pid].signals.append(sig)

    def inspect(self, instance_id: str) -> InstanceStatus:
        """The status of one instance; raises NotFound."""
        with self._lock:
            return self._get(instance_id)

    def list(self) -> list[InstanceStatus]:
        """Every supervised instance, by id."""
        with self._lock:
            return [self._status[k] for k in sorted(self._status)]

    def adopt(self, spec: InstanceSpec, pid: int, create_time: float) -> bool:
        """Take over a pretend process when pid and start time match."""
        with self._lock:
            self.calls.append(("adopt", spec.instance_id, pid))
            if spec.instance_id in self._status:
                raise Conflict(f"instance {spec.instance_id} is already supervised")
            if not self.host.is_alive(pid, create_time):
                return False
            self._status[spec.instance_id] = InstanceStatus(
                spec.instance_id,
                InstanceState.RUNNING,
                pid,
                create_time,
                0,
                None,
                None,
                f"adopted after a daemon restart (pid {pid})",
            )
            self._specs[spec.instance_id] = spec
            return True

    def close(self) -> None:
        """Stop supervising; pretend processes keep running on the host."""
        self.closed = True

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
        """Pretend to run a command: print the configured lines, take ``run_once_seconds`` (130 at
        once when ``cancel`` is set meanwhile), return the configured code."""
        self.run_once_users.append(user)
        self.run_once_limits.append((memory_limit_mb, cpus))
        self.calls.append(("run_once", command) if image is None else ("run_once", command, image))
        lines = self.run_once_output.get(command, [])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            for line in lines:
                log.write(line + "\n")
                if on_output is not None:
                    on_output(line)
        wait = self.run_once_seconds.get(command, 0.0)
        if wait and cancel is not None and cancel.wait(wait):
            return 130
        if wait and cancel is None:
            threading.Event().wait(wait)
        result = self.run_once_results.get(command, 0)
        return result(command, env) if callable(result) else result

    # -- test controls -------------------------------------------------------------------------
    def crash(self, instance_id: str, exit_code: int = 1) -> InstanceStatus:
        """Make an instance exit: it goes to BACKOFF, as a real crash would."""
        with self._lock:
            status = self._get(instance_id)
            if status.pid is not None:
                self.host.processes[status.pid].alive = False
            crashes = status.restarts  # consecutive crashes, as far as a fake needs
            plan = plan_restart(self.policy, crashes, 0.0)
            message = f"exited with code {exit_code}; {render_restart(plan.delay_s)}"
            status = replace(
                status,
                state=InstanceState.BACKOFF,
                pid=None,
                create_time=None,
                last_exit_code=exit_code,
                next_restart_in_s=plan.delay_s,
                last_event=message,
            )
            self._status[instance_id] = status
        self._emit(instance_id, "exited", message)
        return status

    def restart(self, instance_id: str) -> InstanceStatus:
        """Finish the back-off of a crashed instance: it runs again with a new pid."""
        with self._lock:
            status = self._get(instance_id)
            if status.state is not InstanceState.BACKOFF:
                raise Conflict(f"instance {instance_id} is not waiting for a restart")
            proc = self.host.spawn(self._specs[instance_id])
            message = f"restarted after a crash (restart {status.restarts + 1}, pid {proc.pid})"
            status = replace(
                status,
                state=InstanceState.RUNNING,
                pid=proc.pid,
                create_time=proc.create_time,
                restarts=status.restarts + 1,
                next_restart_in_s=None,
                last_event=message,
            )
            self._status[instance_id] = status
        self._emit(instance_id, "restarted", message)
        return status

    # -- helpers -------------------------------------------------------------------------------
    def _get(self, instance_id: str) -> InstanceStatus:
        status = self._status.get(instance_id)
        if status is None:
            raise NotFound(f"no instance {instance_id} is running here")
        return status

    def _emit(self, instance_id: str, kind: str, message: str) -> None:
        if self.on_event is not None:
            self.on_event(instance_id, kind, message)
