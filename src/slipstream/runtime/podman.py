"""The Podman driver: app instances as containers, supervised by slipstream (no restart policies).

Lifecycle (see ``runtime.base`` for the protocol):

1. ``start`` is ``podman run --detach --replace`` (a leftover of the same name goes) of
   ``spec.image`` named ``<prefix><instance_id>``: env from a 0600 env file (deleted when the
   command returns), ``PORT`` = the container port (10000 unless ``spec.container_port``) published
   on ``127.0.0.1:spec.port``, memory (no extra swap) and CPU caps, disks as volumes. Output goes
   straight into ``spec.log_path`` (``--log-driver passthrough``: conmon hands the container the
   file descriptor podman was given), so logging does not depend on the daemon. The container's
   main process (host pid + start time, as with local processes) identifies this run of it.
2. The supervisor thread wakes every ``poll_interval`` and checks that pid with psutil (no podman
   call while all is well). A dead one is inspected once for its exit code; exit 137 with the
   container's memory cgroup showing an ``oom_kill`` is reported as the memory cap (Podman 4.3.1's
   ``OOMKilled`` stays false here). The instance waits in BACKOFF (``plan_restart``), then its
   container is replaced by a new one from the same spec.
3. ``stop`` is ``podman stop --time <shutdown delay>`` (the image's stop signal, then SIGKILL),
   then ``podman rm``; the driver forgets the instance.
4. ``close`` only ends the thread: containers keep running (and logging) for the next daemon, which
   ``adopt``s each by name when its main pid and start time still match.

Podman calls that take long (run, inspect, stop) are made outside the lock; an instance with such a
call under way is ``busy`` and left alone by everyone else. Events go to ``on_event`` outside the lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import CommandFailed, Conflict, InvalidInput, NotFound, SlipstreamError, Unavailable
from slipstream.runtime.backoff import BackoffPolicy, plan_restart, render_restart
from slipstream.runtime.base import EventCallback, InstanceSpec, InstanceState, InstanceStatus
from slipstream.runtime.oneoff import CANCELED_EXIT_CODE
from slipstream.runtime.podman_cli import PodmanCli
from slipstream.runtime.podman_commands import (
    LABEL_INSTANCE,
    LABEL_OWNER,
    ContainerInfo,
    build_attach_argv,
    build_inspect_argv,
    build_job_argv,
    build_kill_argv,
    build_ps_argv,
    build_rm_argv,
    build_run_argv,
    build_stop_argv,
    container_env,
    container_name,
    memory_cgroup_of,
    parse_inspect,
    parse_oom_kills,
    parse_ps,
)
from slipstream.runtime.process import create_time_of, describe_exit, is_same_process

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_Event = tuple[str, str, str]
_Events = list[_Event]  # (the class's own ``list`` method shadows the builtin inside it)
_Names = list[str]


@dataclass(frozen=True)
class _Run:
    """One running container: what identifies it and where its memory counters are."""

    container_id: str
    pid: int | None  # None when it exited before it could be inspected
    create_time: float | None
    cgroup: Path | None
    oom_kills: int


@dataclass
class _Instance:
    """Mutable supervision record; guarded by the driver's lock."""

    spec: InstanceSpec
    name: str
    state: InstanceState = InstanceState.RUNNING
    run: _Run | None = None
    started_at: float = 0.0  # driver clock
    restarts: int = 0
    crashes_in_row: int = 0
    last_exit_code: int | None = None
    restart_at: float | None = None  # driver clock, in BACKOFF
    last_event: str | None = None
    oom_kills_seen: int = 0  # the cgroup's count last read while running
    stopping: bool = False
    busy: bool = False  # a podman call for it is under way outside the lock


class PodmanDriver:
    """Runs instances as Podman containers and restarts them after crashes."""

    def __init__(
        self,
        podman: PodmanCli,
        on_event: EventCallback | None = None,
        *,
        name_prefix: str = "slip-",
        backoff_initial: float = 1.0,
        backoff_max: float = 300.0,
        backoff_reset_after: float = 600.0,
        poll_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        cgroup_root: Path = CGROUP_ROOT,
    ) -> None:
        self.podman = podman
        self._on_event = on_event
        self._prefix = name_prefix
        self._policy = BackoffPolicy(backoff_initial, backoff_max, backoff_reset_after)
        self._poll_interval = poll_interval
        self._clock = clock
        self._cgroup_root = cgroup_root
        self._lock = threading.Lock()
        self._instances: dict[str, _Instance] = {}
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="podman-supervisor", daemon=True)
        self._thread.start()

    # -- protocol ------------------------------------------------------------------------------
    def start(self, spec: InstanceSpec) -> InstanceStatus:
        """Run a new container for ``spec`` and supervise it."""
        name = container_name(self._prefix, spec.instance_id)
        if not spec.image:
            raise InvalidInput(f"instance {spec.instance_id} has no image", "build or pull the service's image first")
        with self._lock:
            if self._closed.is_set():
                raise Unavailable("the runtime driver is closed", "restart the daemon")
            if spec.instance_id in self._instances:
                raise Conflict(
                    f"instance {spec.instance_id} is already supervised", "stop it first or pick a new instance id"
                )
            inst = _Instance(spec, name, busy=True)  # reserve the id while podman runs
            self._instances[spec.instance_id] = inst
        try:
            run = self._launch(spec, name)
        except BaseException:
            with self._lock:
                inst.busy = False  # a stop() waiting on it may go on (and finds nothing to stop)
                self._instances.pop(spec.instance_id, None)
            raise
        with self._lock:
            self._running(inst, run)
            inst.last_event = f"started ({_describe(run)})"
            inst.busy = False
            status = self._status(inst)
        self._emit((spec.instance_id, "started", inst.last_event))
        return status

    def stop(self, instance_id: str, timeout: float | None = None) -> None:
        """``podman stop`` (SIGTERM, SIGKILL after ``timeout``), then remove the container and forget it."""
        with self._lock:
            inst = self._get(instance_id)
            already_stopping, inst.stopping = inst.stopping, True
            delay = inst.spec.shutdown_delay_s if timeout is None else timeout
        if already_stopping:  # another thread is stopping it: wait for that to finish
            self._wait(lambda: instance_id not in self._instances, delay + 30)
            return
        self._wait(lambda: not inst.busy, 180)  # a restart under way finishes first
        res = self.podman.run(build_stop_argv(inst.name, delay), timeout=delay + 60, check=False)
        how = "stopped"
        if "SIGKILL" in res.stderr:
            how = f"stopped with SIGKILL after {delay:g} s"
        elif res.returncode != 0:
            log.warning("podman stop %s: %s", inst.name, res.stderr.strip())
        self.podman.run(build_rm_argv(inst.name), check=False)
        with self._lock:
            self._instances.pop(instance_id, None)
        self._emit((instance_id, "stopped", how))

    def signal(self, instance_id: str, sig: int) -> None:
        """Send ``sig`` to the container's main process."""
        with self._lock:
            inst = self._get(instance_id)
            if inst.state is not InstanceState.RUNNING or inst.run is None or inst.run.pid is None:
                raise Conflict(
                    f"instance {instance_id} is not running ({inst.state})", "wait for its restart, or start it again"
                )
            name = inst.name
        self.podman.run(build_kill_argv(name, sig), timeout=30)

    def inspect(self, instance_id: str) -> InstanceStatus:
        """The status of one instance; raises NotFound."""
        with self._lock:
            return self._status(self._get(instance_id))

    def list(self) -> list[InstanceStatus]:
        """The status of every supervised instance, by id."""
        with self._lock:
            return [self._status(self._instances[k]) for k in sorted(self._instances)]

    def adopt(self, spec: InstanceSpec, pid: int, create_time: float) -> bool:
        """Supervise a container a previous daemon started; False when it is gone or not the same run.

        A container of ours that has exited is removed (its output is in the log file already)."""
        name = container_name(self._prefix, spec.instance_id)
        with self._lock:
            if self._closed.is_set():
                raise Unavailable("the runtime driver is closed", "restart the daemon")
            if spec.instance_id in self._instances:
                raise Conflict(f"instance {spec.instance_id} is already supervised")
        info = self._inspect(name)
        if info is None:
            return False
        if info.labels.get(LABEL_OWNER) != self.podman.owner or info.labels.get(LABEL_INSTANCE) != spec.instance_id:
            log.warning("not adopting %s: container %s was not made by this slipstream", spec.instance_id, name)
            return False
        if not info.running:
            self.podman.run(build_rm_argv(name), check=False)
            return False
        if info.pid != pid or not is_same_process(pid, create_time):
            return False
        run = self._run_of(info, create_time)
        with self._lock:
            if spec.instance_id in self._instances:
                raise Conflict(f"instance {spec.instance_id} is already supervised")
            inst = _Instance(spec, name)
            self._running(inst, run)
            inst.last_event = f"adopted after a daemon restart ({_describe(run)})"
            self._instances[spec.instance_id] = inst
        return True

    def close(self) -> None:
        """Stop supervising; containers keep running."""
        self._closed.set()
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
        memory_limit_mb: int | None = None,
        cpus: float | None = None,
        volumes: tuple[tuple[str, str], ...] = (),
        user: str | None = None,  # (a container runs as its image's user)
    ) -> int:
        """Run ``/bin/sh -c command`` in a new container of ``image`` to completion; its exit code (124
        on timeout). ``cwd`` is a host path the container cannot see: the image's WORKDIR applies.
        The env file is gone before the command starts (``podman create`` reads it)."""
        if not image:
            raise InvalidInput("a one-off command in a container needs the image to run it in")
        name = container_name(self._prefix, f"job-{uuid.uuid4().hex[:12]}")
        with self.podman.env_file(env) as (env_file, plan):
            argv = build_job_argv(
                image,
                command,
                name=name,
                owner=self.podman.owner,
                env_file=str(env_file),
                by_name=plan.by_name,
                memory_limit_mb=memory_limit_mb,
                cpus=cpus,
                volumes=volumes,
            )
            self.podman.run(argv, timeout=120)
        done = threading.Event()
        if cancel is not None:  # a canceled deploy removes the container: the stream below then ends
            threading.Thread(target=self._remove_on, args=(cancel, done, name), daemon=True).start()
        try:
            code = self.podman.stream(
                build_attach_argv(name),
                log_path,
                on_output,
                timeout_s,
                on_timeout=lambda: self._remove(name),
            )
        finally:
            done.set()
            self.podman.run(build_rm_argv(name), check=False)  # --rm already did, unless start failed
        return CANCELED_EXIT_CODE if cancel is not None and cancel.is_set() else code

    def _remove_on(self, cancel: threading.Event, done: threading.Event, name: str) -> None:
        """Remove container ``name`` if ``cancel`` is set before ``done``."""
        while not done.is_set():
            if cancel.wait(0.2):
                if not done.is_set():
                    self._remove(name)
                return

    # -- housekeeping --------------------------------------------------------------------------
    def remove_unsupervised(self) -> _Names:
        """Remove this installation's containers that no instance here supervises (call after the
        adopt pass of a daemon start); the names removed."""
        res = self.podman.run(build_ps_argv(self.podman.owner))
        with self._lock:
            keep = {inst.name for inst in self._instances.values()}
        removed: _Names = []
        for name, _labels, _running in parse_ps(res.stdout):
            if name.startswith(self._prefix) and name not in keep:
                self.podman.run(build_rm_argv(name), check=False)
                removed.append(name)
        return removed

    # -- supervision ---------------------------------------------------------------------------
    def _supervise(self) -> None:
        while not self._closed.wait(self._poll_interval):
            try:
                self._tick()
            except Exception:  # the supervisor must outlive any single failure
                log.exception("podman supervisor tick failed")

    def _tick(self) -> None:
        exited: list[_Instance] = []
        due: list[_Instance] = []
        with self._lock:
            for inst in self._instances.values():
                if inst.stopping or inst.busy:
                    continue
                if inst.state is InstanceState.RUNNING:
                    if self._alive(inst):
                        continue
                    inst.busy = True
                    exited.append(inst)
                elif inst.state is InstanceState.BACKOFF and self._clock() >= (inst.restart_at or 0):
                    inst.busy = True
                    due.append(inst)
        events: _Events = []
        for inst in exited:
            self._guard(inst, self._exited, events)
        for inst in due:
            self._guard(inst, self._restart, events)
        for event in events:
            self._emit(event)

    def _guard(self, inst: _Instance, step: Callable[[_Instance, _Events], None], events: _Events) -> None:
        try:
            step(inst, events)
        except Exception:
            log.exception("supervising %s failed", inst.spec.instance_id)
        finally:
            with self._lock:
                inst.busy = False

    def _alive(self, inst: _Instance) -> bool:
        """Is the container's main process still the one we started? Also note its OOM-kill count."""
        run = inst.run
        if run is None or run.pid is None or run.create_time is None:
            return False
        if not is_same_process(run.pid, run.create_time):
            return False
        if run.cgroup is not None:
            inst.oom_kills_seen = max(inst.oom_kills_seen, self._oom_kills(run.cgroup))
        return True

    def _exited(self, inst: _Instance, events: _Events) -> None:
        """Read why the container stopped, then back off (outside the lock: podman inspect is slow)."""
        run = inst.run
        oom_now = inst.oom_kills_seen
        if run is not None and run.cgroup is not None:
            oom_now = max(oom_now, self._oom_kills(run.cgroup))  # the cgroup lives until podman cleans up
        info = self._inspect(inst.name)
        if info is not None and info.running and info.pid is not None:
            # the container runs again (someone ran 'podman start' on it): keep watching its new process
            with self._lock:
                inst.run = self._run_of(info, create_time_of(info.pid))
            return
        code = info.exit_code if info is not None else None
        limit = inst.spec.memory_limit_mb
        if limit and run is not None and oom_now > run.oom_kills:
            what = f"exceeded memory limit (reached the {limit} MB cap; killed by the kernel)"
        elif info is None:
            what = "vanished (its container was removed outside slipstream)"
        else:
            what = describe_exit(code)
        with self._lock:
            if inst.stopping:
                return
            self._back_off(inst, code, what, events)

    def _back_off(self, inst: _Instance, code: int | None, what: str, events: _Events) -> None:
        plan = plan_restart(self._policy, inst.crashes_in_row, self._clock() - inst.started_at)
        inst.state, inst.run = InstanceState.BACKOFF, None
        inst.crashes_in_row, inst.last_exit_code = plan.crashes_in_row, code
        inst.restart_at = self._clock() + plan.delay_s
        inst.last_event = f"{what}; {render_restart(plan.delay_s)}"
        events.append((inst.spec.instance_id, "exited", inst.last_event))

    def _restart(self, inst: _Instance, events: _Events) -> None:
        try:
            run = self._launch(inst.spec, inst.name)
        except SlipstreamError as exc:
            with self._lock:
                if not inst.stopping:
                    self._back_off(inst, None, f"could not restart: {exc.message}", events)
            return
        with self._lock:
            self._running(inst, run)
            inst.restarts += 1
            inst.last_event = f"restarted after a crash (restart {inst.restarts}, {_describe(run)})"
            if not inst.stopping:
                events.append((inst.spec.instance_id, "restarted", inst.last_event))

    # -- podman --------------------------------------------------------------------------------
    def _launch(self, spec: InstanceSpec, name: str) -> _Run:
        """Replace any container called ``name`` by a new one for ``spec``; raises SlipstreamError."""
        with self.podman.env_file(container_env(spec)) as (env_file, plan):
            argv = build_run_argv(
                spec, name=name, owner=self.podman.owner, env_file=str(env_file), by_name=plan.by_name
            )
            self.podman.launch(argv, spec.log_path, plan.by_name)
        info = self._inspect(name)
        if info is None:
            raise CommandFailed(f"container {name} vanished right after it was started")
        return self._run_of(info, create_time_of(info.pid) if info.pid else None)

    def _run_of(self, info: ContainerInfo, create_time: float | None) -> _Run:
        cgroup = self._cgroup_of(info.pid) if info.pid else None
        return _Run(info.id, info.pid, create_time, cgroup, self._oom_kills(cgroup) if cgroup else 0)

    def _inspect(self, name: str) -> ContainerInfo | None:
        res = self.podman.run(build_inspect_argv(name), check=False, timeout=60)
        if res.returncode != 0:
            if "no such container" in res.stderr.lower():
                return None
            raise CommandFailed(f"podman inspect {name} failed: {res.stderr.strip() or res.returncode}")
        return parse_inspect(res.stdout)

    def _cgroup_of(self, pid: int) -> Path | None:
        """The memory cgroup directory of the container's main process (v1 memory hierarchy, or v2)."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return None
        path = memory_cgroup_of(text)
        if path is None:
            return None
        v1 = self._cgroup_root / "memory" / path.lstrip("/")
        return v1 if v1.is_dir() else self._cgroup_root / path.lstrip("/")

    def _remove(self, name: str) -> None:
        self.podman.run(build_rm_argv(name), check=False)

    @staticmethod
    def _oom_kills(cgroup: Path) -> int:
        for file in ("memory.oom_control", "memory.events"):
            try:
                return parse_oom_kills((cgroup / file).read_text())
            except OSError:
                continue
        return 0

    # -- helpers -------------------------------------------------------------------------------
    def _running(self, inst: _Instance, run: _Run) -> None:
        inst.state, inst.run, inst.restart_at = InstanceState.RUNNING, run, None
        inst.started_at, inst.oom_kills_seen = self._clock(), run.oom_kills

    def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if done():
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
        run = inst.run
        return InstanceStatus(
            inst.spec.instance_id,
            inst.state,
            run.pid if run else None,
            run.create_time if run else None,
            inst.restarts,
            inst.last_exit_code,
            wait,
            inst.last_event,
        )

    def _emit(self, event: _Event) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(*event)
        except Exception:
            log.exception("on_event callback failed for %s", event)


def _describe(run: _Run) -> str:
    pid = f", pid {run.pid}" if run.pid else ""
    return f"container {run.container_id[:12]}{pid}"
