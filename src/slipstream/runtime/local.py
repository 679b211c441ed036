"""The local driver: app instances as process groups on this machine, watched by one thread.

Lifecycle (see ``runtime.base`` for the protocol):

1. ``start`` spawns ``/bin/sh -c startCommand`` in a new session; stdout and stderr go straight to
   the instance's log file (O_APPEND), never through a pipe the daemon owns, so an app outlives
   the daemon.
2. The supervisor thread wakes when an instance's process exits (it waits on a pidfd per
   process, so a death is noticed at once), when a memory check is due, and every
   ``poll_interval`` only while something needs polling (an instance in BACKOFF, or one without a
   pidfd); an idle set of healthy instances costs no wake-ups (``IDLE_WAKE_S`` is a safety net). A
   child that exited is noticed without being reaped, its leftover group is killed, then it is
   reaped (no zombies, and the group id cannot be reused in between). An adopted process is not
   our child: it counts as dead when its pid is gone, is a zombie, or has another start time.
   Whatever else the instance started (``setsid`` children too) is killed through its cgroups.
3. A crashed instance starts again at once from the same spec (so on the same port); a second
   crash in a row waits in BACKOFF (``plan_restart``: 1 s doubling to 300 s, reset after 10 min up),
   the driver holding its port meanwhile (``runtime.ports``) so no other process takes it.
4. ``stop`` marks the instance so the supervisor leaves it alone, SIGTERMs the group, waits until
   no live member is left (at most the shutdown delay), SIGKILLs the rest, sweeps its cgroups and
   forgets it.
5. ``close`` only ends the thread: the apps keep running for the next daemon to ``adopt``.

Events go to ``on_event`` outside the lock, so a callback may call back into the driver.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput, NotFound, SlipstreamError, Unavailable
from slipstream.runtime.backoff import BackoffPolicy, plan_restart, render_restart
from slipstream.runtime.base import EventCallback, InstanceSpec, InstanceState, InstanceStatus
from slipstream.runtime.cgroups import LimitCgroups, MemoryCgroups, OneOffCgroups, sweep
from slipstream.runtime.oneoff import run_command
from slipstream.runtime.ports import hold_port, release_port
from slipstream.runtime.process import (
    child_create_time,
    child_has_exited,
    create_time_of,
    descendants,
    describe_exit,
    exit_code,
    group_of,
    is_same_process,
    live_group_members,
    member_state,
    open_log,
    signal_group,
    spawn,
    tree_rss,
)

log = logging.getLogger(__name__)

# Longest the supervisor sleeps when nothing is due: a safety net (every death wakes it at once).
IDLE_WAKE_S = 30.0

_Event = tuple[str, str, str]
_Events = list[_Event]  # (the class's own ``list`` method shadows the builtin inside it)
_Paths = list[Path]
_Pids = list[int]


@dataclass
class _Instance:
    """Mutable supervision record; guarded by the driver's lock."""

    spec: InstanceSpec
    state: InstanceState = InstanceState.RUNNING
    proc: subprocess.Popen[bytes] | None = None  # None when adopted (not our child) or in BACKOFF
    pid: int | None = None
    create_time: float | None = None
    started_at: float = 0.0  # driver clock
    restarts: int = 0
    crashes_in_row: int = 0
    last_exit_code: int | None = None
    restart_at: float | None = None  # driver clock, in BACKOFF
    last_event: str | None = None
    kill_reason: str | None = None  # why the driver itself killed it (memory)
    oom_kills_seen: int = 0  # the cgroup's OOM-kill count at launch
    capped: bool = False  # launched into a memory cgroup with its cap: the kernel enforces it
    next_memory_check: float = 0.0  # time.monotonic
    stopping: bool = False
    pidfd: int | None = None  # readable once the process exits (Linux pidfd_open)
    port_hold: socket.socket | None = None  # keeps spec.port from other processes during BACKOFF


class LocalDriver:
    """Runs instances as local process groups and restarts them after crashes."""

    def __init__(
        self,
        on_event: EventCallback | None = None,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        backoff_reset_after: float = 600.0,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        memory_check_interval: float = 2.0,
        memory_cgroups: MemoryCgroups | None = None,
        limit_cgroups: LimitCgroups | None = None,
        pids_max: int | None = None,
    ) -> None:
        self._on_event = on_event
        self._cgroups = memory_cgroups
        self._limits = limit_cgroups
        self._pids_max = pids_max
        self._oneoff = (
            OneOffCgroups(memory_cgroups, limit_cgroups, pids_max) if memory_cgroups or limit_cgroups else None
        )
        self._policy = BackoffPolicy(backoff_initial, backoff_max, backoff_reset_after)
        self._poll_interval = poll_interval
        self._clock = clock
        self._memory_check_interval = memory_check_interval
        self._lock = threading.Lock()
        self._instances: dict[str, _Instance] = {}
        self._closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._supervise, name="runtime-supervisor", daemon=True)
        self._thread.start()

    @property
    def memory_cgroups(self) -> MemoryCgroups | None:
        """The per-instance memory cgroups in use, if any."""
        return self._cgroups

    @property
    def limit_cgroups(self) -> LimitCgroups | None:
        """The per-instance cpu, pids and freezer cgroups in use, if any."""
        return self._limits

    @property
    def oneoff_cgroups(self) -> OneOffCgroups | None:
        """The cgroups one-off commands run in (builds use them too), if any."""
        return self._oneoff

    # -- protocol ------------------------------------------------------------------------------
    def start(self, spec: InstanceSpec) -> InstanceStatus:
        """Launch a new instance and supervise it."""
        with self._lock:
            if self._closed.is_set():
                raise Unavailable("the runtime driver is closed", "restart the daemon")
            if spec.instance_id in self._instances:
                raise Conflict(
                    f"instance {spec.instance_id} is already supervised", "stop it first or pick a new instance id"
                )
            inst = _Instance(spec)
            self._launch(inst)
            inst.last_event = f"started (pid {inst.pid})"
            self._instances[spec.instance_id] = inst
            status = self._status(inst)
        self._wake()  # the supervisor now waits on this process too
        self._emit((spec.instance_id, "started", inst.last_event))
        return status

    def stop(self, instance_id: str, timeout: float | None = None) -> None:
        """SIGTERM the instance's process group, SIGKILL after ``timeout``, then forget it."""
        with self._lock:
            inst = self._get(instance_id)
            already_stopping, inst.stopping = inst.stopping, True
            proc, pgid = inst.proc, inst.pid if inst.state is InstanceState.RUNNING else None
            if pgid is not None and proc is None and not is_same_process(pgid, inst.create_time or 0.0):
                pgid = _leftover_group(pgid)  # the adopted process is gone: never signal a reused pid
            delay = inst.spec.shutdown_delay_s if timeout is None else timeout
        if already_stopping:  # another thread is stopping it: wait for that to finish
            self._wait_forgotten(instance_id, delay + 10)
            return
        how = "stopped"
        if pgid is not None:
            how = self._terminate(proc, pgid, delay)
        swept = self._sweep(instance_id)
        if swept:
            how += f"; killed {swept} more process{'es' if swept > 1 else ''} it had started"
        with self._lock:
            gone = self._instances.pop(instance_id, None)
            if gone is not None:
                _close_pidfd(gone)
                release_port(gone.port_hold)
                gone.port_hold = None
        self._remove_cgroups(instance_id)
        self._emit((instance_id, "stopped", how))

    def signal(self, instance_id: str, sig: int) -> None:
        """Send ``sig`` to the instance's process group."""
        with self._lock:
            inst = self._get(instance_id)
            if inst.state is not InstanceState.RUNNING or inst.pid is None:
                raise Conflict(
                    f"instance {instance_id} is not running ({inst.state})", "wait for its restart, or start it again"
                )
            signal_group(inst.pid, sig)

    def inspect(self, instance_id: str) -> InstanceStatus:
        """The status of one instance; raises NotFound."""
        with self._lock:
            return self._status(self._get(instance_id))

    def list(self) -> list[InstanceStatus]:
        """The status of every supervised instance, by id."""
        with self._lock:
            return [self._status(self._instances[k]) for k in sorted(self._instances)]

    def adopt(self, spec: InstanceSpec, pid: int, create_time: float) -> bool:
        """Supervise a process a previous daemon started; False when it is gone or not the same one."""
        with self._lock:
            if self._closed.is_set():
                raise Unavailable("the runtime driver is closed", "restart the daemon")
            if spec.instance_id in self._instances:
                raise Conflict(f"instance {spec.instance_id} is already supervised")
            if not is_same_process(pid, create_time):
                return False
            if group_of(pid) != pid:
                # Every instance we start leads its own group; anything else is not ours to signal.
                log.warning("not adopting %s: pid %d does not lead its process group", spec.instance_id, pid)
                return False
            self._instances[spec.instance_id] = _Instance(
                spec,
                pid=pid,
                create_time=create_time,
                started_at=self._clock(),
                last_event=f"adopted after a daemon restart (pid {pid})",
                oom_kills_seen=self._cgroups.oom_kills(spec.instance_id) if self._cgroups else 0,
                pidfd=_open_pidfd(pid),
            )
        self._wake()
        return True

    def close(self) -> None:
        """Stop supervising; instances keep running."""
        self._closed.set()
        self._wake()
        with self._lock:
            for inst in self._instances.values():  # the next daemon restarts what waits in back-off
                release_port(inst.port_hold)
                inst.port_hold = None
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, self._poll_interval * 5))

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
        """Run a one-off shell command (as ``user`` when given, in cgroups of its own with the same
        limits as an instance) to completion and return its exit code (124 on timeout)."""
        if image is not None:
            raise InvalidInput("the local driver runs processes, not images", "run it through the container driver")
        return run_command(
            command,
            cwd,
            env,
            log_path,
            timeout_s,
            on_output,
            cancel=cancel,
            user=user,
            cgroups=self._oneoff,
            memory_limit_mb=memory_limit_mb,
            cpus=cpus,
        )

    # -- supervision ---------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._closed.is_set():
            self._wait_for_exit()
            if self._closed.is_set():
                return
            try:
                self._tick()
            except Exception:  # the supervisor must outlive any single failure
                log.exception("runtime supervisor tick failed")

    def _wait_for_exit(self) -> None:
        """Sleep until a supervised process exits, ``close`` or ``start`` wakes us, or the next
        check is due (``_next_wake``)."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        with self._lock:
            for inst in self._instances.values():
                if inst.pidfd is not None and inst.state is InstanceState.RUNNING and not inst.stopping:
                    poller.register(inst.pidfd, select.POLLIN)
            timeout = self._next_wake()
        for fd, _ in poller.poll(timeout * 1000):
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 64)
                except BlockingIOError:
                    pass

    def _next_wake(self) -> float:
        """Seconds until the supervisor must look without being woken: ``poll_interval`` while an
        instance waits in BACKOFF (its restart time is on the driver's clock, which tests move) or
        runs without a pidfd; else until the earliest memory check; else ``IDLE_WAKE_S``."""
        due = IDLE_WAKE_S
        now = time.monotonic()
        for inst in self._instances.values():
            if inst.stopping:
                continue
            if inst.state is not InstanceState.RUNNING or inst.pidfd is None:
                return self._poll_interval
            if inst.spec.memory_limit_mb and not inst.capped:
                due = min(due, max(0.0, inst.next_memory_check - now))
        return due

    def _tick(self) -> None:
        events: _Events = []
        with self._lock:
            for inst in list(self._instances.values()):
                if inst.stopping:
                    continue
                try:
                    if inst.state is InstanceState.RUNNING:
                        self._check(inst, events)
                    if inst.state is InstanceState.BACKOFF and self._clock() >= (inst.restart_at or 0):
                        self._restart(inst, events)  # a first crash restarts in the same tick
                except Exception:
                    log.exception("supervising %s failed", inst.spec.instance_id)
        for event in events:
            self._emit(event)

    def _check(self, inst: _Instance, events: _Events) -> None:
        """Notice a crash (and reap it), or enforce the memory limit of a running instance."""
        assert inst.pid is not None
        if inst.proc is not None:
            if not child_has_exited(inst.proc):
                self._check_memory(inst)
                return
            signal_group(inst.pid, signal.SIGKILL)  # leftovers, while the group id is still reserved
            self._sweep(inst.spec.instance_id)  # and what left the group (setsid), before the pid is reaped
            code: int | None = exit_code(inst.proc.wait())
        else:
            if is_same_process(inst.pid, inst.create_time or 0.0):
                self._check_memory(inst)
                return
            leftovers = _leftover_group(inst.pid)
            if leftovers is not None:
                signal_group(leftovers, signal.SIGKILL)
            self._sweep(inst.spec.instance_id)
            code = None  # not our child: the exit status went to its old parent
        what = inst.kill_reason or self._oom_reason(inst) or describe_exit(code)
        self._back_off(inst, code, what, events)

    def _oom_reason(self, inst: _Instance) -> str | None:
        """Why the kernel killed an instance over its cgroup's cap, when it did."""
        limit = inst.spec.memory_limit_mb
        if self._cgroups is None or not limit or self._cgroups.oom_kills(inst.spec.instance_id) <= inst.oom_kills_seen:
            return None
        return f"exceeded memory limit (reached the {limit} MB cap; killed by the kernel)"

    def _back_off(self, inst: _Instance, code: int | None, what: str, events: _Events) -> None:
        plan = plan_restart(self._policy, inst.crashes_in_row, self._clock() - inst.started_at)
        _close_pidfd(inst)
        inst.state, inst.proc, inst.pid, inst.create_time = InstanceState.BACKOFF, None, None, None
        inst.crashes_in_row, inst.last_exit_code, inst.kill_reason = plan.crashes_in_row, code, None
        inst.restart_at = self._clock() + plan.delay_s
        if plan.delay_s > 0:
            self._hold_port(inst)
        inst.last_event = f"{what}; {render_restart(plan.delay_s)}"
        events.append((inst.spec.instance_id, "exited", inst.last_event))

    def _restart(self, inst: _Instance, events: _Events) -> None:
        try:
            self._launch(inst)
        except SlipstreamError as exc:
            self._back_off(inst, None, f"could not restart: {exc.message}", events)
            return
        inst.restarts += 1
        inst.last_event = f"restarted after a crash (restart {inst.restarts}, pid {inst.pid})"
        events.append((inst.spec.instance_id, "restarted", inst.last_event))

    def _check_memory(self, inst: _Instance) -> None:
        limit = inst.spec.memory_limit_mb
        if not limit or inst.capped or inst.pid is None or time.monotonic() < inst.next_memory_check:
            return  # a capped instance costs no RSS walk (psutil reads all of /proc for a process tree)
        inst.next_memory_check = time.monotonic() + self._memory_check_interval
        rss_mb = tree_rss(inst.pid) / (1024 * 1024)
        if rss_mb > limit:
            inst.kill_reason = f"exceeded memory limit ({rss_mb:.0f} MB > {limit} MB)"
            signal_group(inst.pid, signal.SIGKILL)  # the next tick sees the exit and backs off

    # -- helpers -------------------------------------------------------------------------------
    def _launch(self, inst: _Instance) -> None:
        """Spawn the instance's command; raises InvalidInput when it cannot start."""
        spec = inst.spec
        try:
            fd = open_log(spec.log_path)
        except OSError as exc:
            raise InvalidInput(f"cannot open the log file {spec.log_path}: {exc.strerror or exc}") from None
        procs = self._join_cgroups(inst)
        release_port(inst.port_hold)  # the app binds it now
        inst.port_hold = None
        try:
            proc = spawn(
                spec.command, spec.cwd, spec.env, fd, f"instance {spec.instance_id}", cgroup_procs=procs, user=spec.user
            )
        finally:
            os.close(fd)
        inst.proc, inst.pid, inst.state = proc, proc.pid, InstanceState.RUNNING
        inst.pidfd = _open_pidfd(proc.pid)
        inst.create_time = child_create_time(proc.pid)
        inst.started_at, inst.restart_at = self._clock(), None
        inst.next_memory_check = time.monotonic() + min(1.0, self._memory_check_interval)

    def _join_cgroups(self, inst: _Instance) -> _Paths:
        """Make the instance's cgroups (memory cap, CPU quota, process limit); the ``cgroup.procs``
        files its shell joins before exec."""
        spec, procs = inst.spec, []
        inst.capped = False  # until the kernel holds its memory cap, the RSS watchdog does
        if self._cgroups is not None and spec.memory_limit_mb:
            memory = self._cgroups.prepare(spec.instance_id, spec.memory_limit_mb)
            inst.oom_kills_seen = self._cgroups.oom_kills(spec.instance_id)
            procs += [memory] if memory is not None else []
            inst.capped = memory is not None
        if self._limits is not None:
            procs += self._limits.prepare(spec.instance_id, spec.cpus, self._pids_max)
        return procs

    def _sweep(self, instance_id: str) -> int:
        """SIGKILL every process left in the instance's cgroups (setsid children included); how many."""
        memory = [self._cgroups.base / instance_id] if self._cgroups is not None else []
        if self._limits is not None:
            return self._limits.sweep(instance_id, also=memory)
        return sweep([g for g in memory if g.is_dir()])

    def _remove_cgroups(self, instance_id: str) -> None:
        if self._cgroups is not None:
            self._cgroups.remove(instance_id)
        if self._limits is not None:
            self._limits.remove(instance_id)

    @staticmethod
    def _hold_port(inst: _Instance) -> None:
        """Keep a backed-off instance's port from other processes until it starts again."""
        if inst.spec.port and inst.port_hold is None:
            inst.port_hold = hold_port(inst.spec.port)
            if inst.port_hold is None:
                log.warning("%s: port %d is taken while it waits to restart", inst.spec.instance_id, inst.spec.port)

    def _terminate(self, proc: subprocess.Popen[bytes] | None, pgid: int, delay: float) -> str:
        """SIGTERM group ``pgid``, SIGKILL what is left after ``delay``; says how it ended."""
        known = descendants(proc.pid) if proc is not None and proc.poll() is None else []
        signal_group(pgid, signal.SIGTERM)
        if self._wait_group(proc, pgid, delay, known):
            return "stopped"
        signal_group(pgid, signal.SIGKILL)
        if not self._wait_group(proc, pgid, 10.0, known):
            log.warning("process group %d survived SIGKILL", pgid)
        return f"stopped with SIGKILL after {delay:g} s"

    @staticmethod
    def _wait_group(proc: subprocess.Popen[bytes] | None, pgid: int, timeout: float, known: _Pids) -> bool:
        """Reap our leader when it exits and wait until no live member is left in the group.

        A scan of /proc reads every process's stat (17.8 ms of CPU with 900 processes), and 200
        draining instances scanning every 20 ms were the largest part of a 200-service apply's
        daemon CPU. So the members are followed by pid instead: ``known`` (the leader's descendants
        before the signal), then the descendants of whichever still run (a few reads each). The
        group is over when ``killpg(pgid, 0)`` finds nobody, or when what is left of the members we
        followed are zombies (an orphan's zombie waits for init, which took ~1.7 s to reap here).
        /proc is scanned only when the group outlives the members we know of without such a zombie
        (e.g. a member we never saw, or an adopted instance, whose descendants we never noted); what
        a member forks and leaves in the last tick is killed with the instance's cgroups."""
        deadline = time.monotonic() + timeout
        members: _Pids = [*known]
        while True:
            over = False
            if proc is not None and proc.poll() is None:  # our leader runs
                members = descendants(proc.pid) or members
            elif not signal_group(pgid, 0):  # no process at all, not even a zombie
                over = True
            else:
                states = {pid: member_state(pid, pgid) for pid in members}
                live = [pid for pid, state in states.items() if state == "live"]
                if live:
                    members = list(dict.fromkeys([*live, *(d for pid in live for d in descendants(pid))]))
                elif "zombie" in states.values():
                    over = True  # what keeps the group is our members' zombies
                else:
                    members = live_group_members(pgid)
                    over = not members
            if over:
                if proc is not None:
                    proc.wait()
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _wait_forgotten(self, instance_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if instance_id not in self._instances:
                    return
            time.sleep(0.02)

    def _get(self, instance_id: str) -> _Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise NotFound(f"no instance {instance_id} is running here", "run 'slipstream status'")
        return inst

    def _status(self, inst: _Instance) -> InstanceStatus:
        wait = None
        if inst.state is InstanceState.BACKOFF and inst.restart_at is not None:
            wait = max(0.0, inst.restart_at - self._clock())
        return InstanceStatus(
            inst.spec.instance_id,
            inst.state,
            inst.pid,
            inst.create_time,
            inst.restarts,
            inst.last_exit_code,
            wait,
            inst.last_event,
        )

    def _wake(self) -> None:
        """Make the supervisor look again now (a new process to wait on, or close)."""
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _emit(self, event: _Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(*event)
        except Exception:
            log.exception("on_event callback failed for %s", event)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _close_pidfd(inst: _Instance) -> None:
    if inst.pidfd is not None:
        try:
            os.close(inst.pidfd)
        except OSError:
            pass
        inst.pidfd = None


def _leftover_group(pid: int) -> int | None:
    """The group an adopted leader ``pid`` left behind, unless the pid now names another live process."""
    return pid if create_time_of(pid) is None else None
