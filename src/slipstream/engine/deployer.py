"""The deploy state machine for one service (web services; DESIGN.md, "The deploy state machine").

    queued → building → pre_deploy → starting → health_check (+ stay healthy) → flipping → live (→ drain old)
               ↓            ↓            ↓            ↓              ↓
         build_failed  pre_deploy_failed  update_failed (start, health or settle failed)

Every transition is written to the store before it is acted on. Any failure before the flip stops
only the new instances; a failure in the settle window after the flip moves traffic back to the old
instances, which are still running. Old instances are signalled only once HAProxy shows no request
in flight to them, or their shutdown delay has run out.
"""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slipstream.engine.health import Probe, check_http, check_tcp, free_port
from slipstream.engine.release import Release, hostname, instance_env
from slipstream.errors import SlipstreamError
from slipstream.state.store import InstanceRecord

if TYPE_CHECKING:
    from slipstream.engine.engine import Engine

log = logging.getLogger("slipstream.engine")

ROUTED_TYPES = {"web", "pserv"}  # take traffic through HAProxy (pserv: a private TCP listener)
FAILED_STATUSES = {"build_failed", "pre_deploy_failed", "update_failed", "canceled"}
ACTIVE_STATUSES = {"queued", "building", "pre_deploy", "starting", "health_check", "flipping"}


class DeployFailed(Exception):
    """Raised inside a deploy run to end it with ``status`` and a one-line ``message``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class BuildRef:
    """The parts of a finished build an instance needs."""

    build_id: int
    commit: str | None
    workdir: Path
    path_prefix: tuple[str, ...]
    extra_env: dict[str, str]


def server_name(deploy_id: int, index: int) -> str:
    """The proxy's name for instance ``index`` of a deploy."""
    return f"d{deploy_id}-{index}"


def instance_id(service: str, deploy_id: int, index: int) -> str:
    """The runtime's id (and log file name) for instance ``index`` of a deploy."""
    return f"{service}-d{deploy_id}-{index}"


def tail(path: Path, n: int = 20) -> list[str]:
    """The last ``n`` lines of a log file (empty when missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


class DeployRun:
    """One run of the state machine; the engine creates one per deploy and calls :meth:`run`."""

    def __init__(self, engine: Engine, deploy_id: int) -> None:
        self.e = engine
        self.id = deploy_id
        self.rec = engine.store.deploy(deploy_id)
        self.service = self.rec.service
        self.release = Release.from_dict(engine.store.deploy_release(deploy_id))
        self.t0 = time.monotonic()
        self.new: list[tuple[str, str, int]] = []  # (instance id, server name, port)
        self.snapshots: list[Any] = []  # pre-deploy database snapshots
        self.stopped_old: list[InstanceRecord] = []  # old instances stopped before the new start

    # -- helpers ------------------------------------------------------------------------------
    def say(self, message: str, kind: str = "step") -> None:
        self.e.store.event(kind, self.e.masker.mask(message), service=self.service, deploy_id=self.id)

    def to(self, status: str, message: str | None = None, **kw: object) -> None:
        self.e.store.transition(self.id, status, message=message, **kw)  # type: ignore[arg-type]

    def timed(self, step: str, started: float) -> tuple[str, float]:
        return (step, time.monotonic() - started)

    # -- the machine --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except DeployFailed as exc:
            self._cleanup_new()
            self._restore_old()
            self.say(f"{exc.status}: {exc.message}", "error")
            self.to(exc.status, exc.message, finished=True)
        except Exception as exc:  # an engine defect: record it, keep the live release
            log.error("deploy %s crashed:\n%s", self.id, traceback.format_exc())
            self._cleanup_new()
            self._restore_old()
            message = f"internal error during deploy: {exc.__class__.__name__}: {exc}"
            self.say(message, "error")
            self.to("update_failed", message, finished=True)

    @property
    def routed(self) -> bool:
        """Whether the service takes traffic through HAProxy (web services and static sites)."""
        return self.release.type in ROUTED_TYPES

    def _run(self) -> None:
        what = {"rollback": "Rollback", "config": "Config change"}.get(self.rec.kind, "Deploy")
        self.say(f"-----> {what} {self.id} of {self.service} ({self.rec.source})")
        build = self._build()
        self.e.prepare_build(self, build)
        self._pre_deploy(build)
        if self.release.type == "cron":  # nothing runs until the schedule fires
            self._go_live([])
            self.to("live", finished=True)
            return
        old = self._old_instances()
        if old and self.release.stop_first:
            self._stop_old_first(old)
            old = []
        self._start(build)
        self._health()
        if self.routed:
            self._stay_healthy()
            self._flip(old)
        self._settle(old)
        self._go_live(old)
        self._drain(old)

    def _stop_old_first(self, old: list[InstanceRecord]) -> None:
        why = "it has a persistent disk" if self.release.disk else "it is a singleton worker"
        self.say(f"-----> Stopping the old release first: {why}, so two releases never overlap")
        started = time.monotonic()
        self.stopped_old = old
        with ThreadPoolExecutor(max_workers=len(old)) as pool:
            list(pool.map(self.e.drain_instance, old))
        self.e.store.transition(self.id, "starting", step=self.timed("stop_old", started))

    def _build(self) -> BuildRef:
        store = self.e.store
        if self.rec.kind in ("rollback", "config") and self.rec.build_id is not None:
            b = store.build(self.rec.build_id)
            if b.status != "ok" or not b.workdir or not Path(b.workdir).is_dir():
                raise DeployFailed("update_failed", f"build {b.id} is no longer on disk; cannot roll back to it")
            self.say(f"-----> Reusing build {b.id} (commit {(b.commit_sha or 'directory')[:12]}), no rebuild")
            return BuildRef(b.id, b.commit_sha, Path(b.workdir), tuple(b.path_prefix), dict(b.extra_env))
        started = time.monotonic()
        self.to("building")
        build_id = store.new_build(self.service)
        store.transition(self.id, "building", build_id=build_id)
        self.say(f"-----> Building ({self.release.runtime}, build {build_id})")
        try:
            built = self.e.build(self, build_id)
        except SlipstreamError as exc:
            store.finish_build(build_id, status="failed", duration_s=time.monotonic() - started)
            lines = getattr(exc, "log_tail", None) or []
            for line in lines[-20:]:
                self.say(line, "build")
            raise DeployFailed("build_failed", f"{exc.message}; the live release keeps serving") from None
        store.finish_build(
            build_id,
            status="ok",
            commit_sha=built.commit,
            source_dir=str(built.source_dir),
            workdir=str(built.workdir),
            path_prefix=list(built.path_prefix),
            extra_env=dict(built.extra_env),
            log_path=str(built.log_path),
            duration_s=built.duration_s,
        )
        store.transition(self.id, "building", step=self.timed("build", started), commit_sha=built.commit)
        return BuildRef(build_id, built.commit, Path(built.workdir), tuple(built.path_prefix), dict(built.extra_env))

    def _env(self, build: BuildRef, port: int | None, iid: str) -> dict[str, str]:
        return instance_env(
            self.release,
            base=self.e.base_env,
            path_prefix=build.path_prefix,
            extra=build.extra_env,
            port=port,
            instance_id=iid,
            commit=build.commit,
            http_port=self.e.settings.http_port,
        )

    def _pre_deploy(self, build: BuildRef) -> None:
        cmd = self.release.pre_deploy_command
        if not cmd or (self.rec.kind in ("rollback", "config") and not self.rec.with_pre_deploy):
            return
        started = time.monotonic()
        self.to("pre_deploy")
        self.e.before_pre_deploy(self)
        self.say(f"-----> Running preDeployCommand: {cmd}")
        log_path = self.e.settings.instances_dir / f"{self.service}-d{self.id}-predeploy.log"
        code = self.e.driver.run_once(
            cmd,
            build.workdir,
            self._env(build, None, f"{self.service}-predeploy"),
            log_path,
            timeout_s=3600,
            on_output=lambda line: self.say(line, "pre_deploy"),
        )
        self.e.store.transition(self.id, "pre_deploy", step=self.timed("pre_deploy", started))
        if code != 0:
            raise DeployFailed(
                "pre_deploy_failed",
                f"preDeployCommand exited with {code}; the live release keeps serving" + self.e.pre_deploy_hint(self),
            )

    def _start(self, build: BuildRef) -> None:
        from slipstream.runtime import InstanceSpec

        started = time.monotonic()
        self.to("starting")
        n = max(1, self.release.num_instances)
        if self.release.type == "pserv":  # its listener first: servers join that backend, not an HTTP one
            self.e.proxy.set_private_route(self.service)
        self.say(f"-----> Starting {n} instance{'s' if n > 1 else ''}: {self.release.start_command}")
        for i in range(1, n + 1):
            iid, name, port = instance_id(self.service, self.id, i), server_name(self.id, i), free_port()
            spec = InstanceSpec(
                instance_id=iid,
                service=self.service,
                deploy_id=self.id,
                command=self.release.start_command or "",
                cwd=build.workdir,
                env=self._env(build, port, iid),
                log_path=self.e.settings.instances_dir / f"{iid}.log",
                port=port,
                shutdown_delay_s=self.release.shutdown_delay_s,
                memory_limit_mb=self.release.memory_limit_mb,
            )
            self.e.store.put_instance(InstanceRecord(iid, self.service, self.id, port, None, None, "starting"))
            self.new.append((iid, name, port))
            status = self.e.driver.start(spec)
            self.e.remember(spec, build)
            self.e.store.put_instance(
                InstanceRecord(iid, self.service, self.id, port, status.pid, status.create_time, "starting")
            )
            if self.routed:
                self.e.proxy.add_server(self.service, name, port)
        self.e.store.transition(self.id, "starting", step=self.timed("start", started))

    def probe(self, port: int) -> Probe:
        path = self.release.health_check_path
        if path:
            host = self.release.hosts[0] if self.release.hosts else hostname(self.service)
            return check_http(port, path, host)
        return check_tcp(port)

    def _health(self) -> None:
        if not self.routed:
            self._worker_grace()
            return
        started = time.monotonic()
        self.to("health_check")
        what = f"GET {self.release.health_check_path}" if self.release.health_check_path else "open port"
        self.say(f"-----> Waiting for health check ({what})")
        deadline = started + self.e.settings.health_deadline_s
        pending = {iid: port for iid, _, port in self.new}
        last: dict[str, Probe] = {}
        interval = 0.01  # a refused connection costs ~0.1 ms: probe often while the app boots
        while pending:
            for iid, port in list(pending.items()):
                p = self.probe(port)
                last[iid] = p
                if p.ok:
                    del pending[iid]
            if not pending:
                break
            if time.monotonic() > deadline:
                iid = next(iter(pending))
                why = last[iid].reason
                exited = self.e.describe_exit(iid)
                lines = tail(self.e.settings.instances_dir / f"{iid}.log")
                for line in lines:
                    self.say(line, "app")
                raise DeployFailed(
                    "update_failed",
                    f"instance {iid} did not become healthy within "
                    f"{self.e.settings.health_deadline_s:g} s: {why}{exited}; "
                    f"the live release keeps serving",
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 0.05 if time.monotonic() - started < 10 else 1.0)
        self.e.store.transition(self.id, "health_check", step=self.timed("health", started))
        self.say(f"       healthy after {time.monotonic() - started:.2f} s")

    def _worker_grace(self) -> None:
        """A worker is healthy when it is still running after a grace period."""
        started = time.monotonic()
        self.to("health_check")
        grace = self.e.worker_grace_s
        self.say(f"-----> Waiting {grace:g} s: a worker is healthy when it is still running")
        while time.monotonic() - started < grace:
            for iid, _, _ in self.new:
                if not self.e.alive(iid):
                    for line in tail(self.e.settings.instances_dir / f"{iid}.log"):
                        self.say(line, "app")
                    raise DeployFailed(
                        "update_failed",
                        f"worker {iid} exited within {grace:g} s"
                        f"{self.e.describe_exit(iid)}; the live release keeps running",
                    )
            time.sleep(0.05)
        self.e.store.transition(self.id, "health_check", step=self.timed("health", started))

    def _old_instances(self) -> list[InstanceRecord]:
        return [i for i in self.e.store.instances(self.service) if i.state == "live" and i.deploy_id != self.id]

    def _flip(self, old: list[InstanceRecord]) -> None:
        started = time.monotonic()
        self.to("flipping")
        if self.release.type == "pserv":
            self.e.proxy.set_private_route(self.service)
        else:
            self.e.proxy.set_route(self.service, list(self.release.hosts or (hostname(self.service),)))
        self.e.proxy.switch(
            self.service,
            ready=[n for _, n, _ in self.new],
            drain=[server_name(i.deploy_id, int(i.id.rsplit("-", 1)[1])) for i in old],
        )
        self.e.store.transition(self.id, "flipping", step=self.timed("flip", started))
        self.say(f"-----> Traffic switched to deploy {self.id} in {1000 * (time.monotonic() - started):.1f} ms")

    def _watch_new(self, seconds: float) -> tuple[str, Probe] | None:
        """Keep checking the new instances for ``seconds``; the first one that fails, and why."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for iid, _, port in self.new:
                probe = self.probe(port) if self.e.alive(iid) else Probe(False, "the process exited")
                if not probe.ok:
                    for line in tail(self.e.settings.instances_dir / f"{iid}.log"):
                        self.say(line, "app")
                    return iid, probe
            time.sleep(0.05)
        return None

    def _stay_healthy(self) -> None:
        """Before any traffic: the new instances must stay up and healthy for a moment (like
        Kubernetes' minReadySeconds), so a release that crashes right after its first good check
        never receives a request. A rollback skips it: its release proved itself when it was live,
        and the settle window after the flip still moves traffic back if it fails."""
        seconds = self.e.min_healthy_s
        if seconds <= 0:
            return
        if self.rec.kind == "rollback":  # the very release (build and env) already ran live
            self.say(f"       deploy {self.rec.rollback_of} ran this release live before: no stability wait")
            return
        started = time.monotonic()
        failed = self._watch_new(seconds)
        if failed:
            iid, probe = failed
            raise DeployFailed(
                "update_failed",
                f"instance {iid} failed within {seconds:g} s of passing its "
                f"health check ({probe.reason}{self.e.describe_exit(iid)}); "
                "the live release keeps serving",
            )
        self.e.store.transition(self.id, "health_check", step=self.timed("min_healthy", started))

    def _settle(self, old: list[InstanceRecord]) -> None:
        """Watch the new instances for a moment while the old ones still run; flip back on failure."""
        settle = self.e.settle_s
        if settle <= 0 or not self.routed:
            return
        started = time.monotonic()
        failed = self._watch_new(settle)
        if failed:
            iid, probe = failed
            self.e.proxy.switch(
                self.service,
                ready=[server_name(i.deploy_id, int(i.id.rsplit("-", 1)[1])) for i in old],
                drain=[n for _, n, _ in self.new],
            )
            back = f"traffic moved back to deploy {old[0].deploy_id}" if old else "no earlier release to move back to"
            raise DeployFailed(
                "update_failed",
                f"instance {iid} failed right after the flip ({probe.reason}{self.e.describe_exit(iid)}); {back}",
            )
        self.e.store.transition(self.id, "flipping", step=self.timed("settle", started))

    def _go_live(self, old: list[InstanceRecord]) -> None:
        store = self.e.store
        previous = store.service(self.service).live_deploy_id
        with store.tx() as c:  # one transaction: new instances live, old draining, deploy live
            for iid, _, _ in self.new:
                c.execute("UPDATE instances SET state='live' WHERE id=?", (iid,))
            for i in old:
                c.execute("UPDATE instances SET state='draining' WHERE id=?", (i.id,))
        store.transition(self.id, "live", make_live=True, step=("total_to_live", time.monotonic() - self.t0))
        if previous is not None and previous != self.id:
            prev = store.deploy(previous)
            if prev.status == "live":
                store.transition(previous, "deactivated", message=f"replaced by deploy {self.id}")
        self.new = []
        self.say(f"-----> Deploy {self.id} is live")

    def _drain(self, old: list[InstanceRecord]) -> None:
        if not old:
            self.to("live", finished=True)
            return
        started = time.monotonic()
        self.say(f"-----> Draining {len(old)} old instance{'s' if len(old) > 1 else ''}")
        with ThreadPoolExecutor(max_workers=max(1, len(old))) as pool:
            list(pool.map(self.e.drain_instance, old))
        self.e.store.transition(self.id, "live", step=self.timed("drain", started), finished=True)

    def _restore_old(self) -> None:
        """After a failed stop-first deploy, start the old release again."""
        for inst in self.stopped_old:
            self.say(f"       starting {inst.id} of the previous release again")
            self.e.restart_instance(inst)
        self.stopped_old = []

    def _cleanup_new(self) -> None:
        for iid, name, _ in self.new:
            try:
                self.e.proxy.remove_server(self.service, name)
            except Exception:  # the server may never have been added
                log.debug("remove_server %s failed", name, exc_info=True)
            self.e.stop_instance(iid, timeout=5)
        self.new = []
