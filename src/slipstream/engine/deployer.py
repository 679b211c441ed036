"""The deploy state machine for one service (DESIGN.md, "The deploy state machine").

    queued → building → pre_deploy → starting → health_check (+ stay healthy) → flipping → live (→ drain old)
               ↓            ↓            ↓            ↓              ↓
         build_failed  pre_deploy_failed  update_failed (start, health or settle failed)
    any step before flipping → canceled (slipstream cancel, or overridden by a newer deploy)

Every transition is written to the store before it is acted on. Any failure or cancel before the
flip stops only the new instances; a failure in the settle window after the flip moves traffic
back to the old instances, which are still running. Old instances are signalled only once HAProxy
shows no request in flight to them, or their shutdown delay has run out. A run sees the engine
only through its :class:`DeployContext`.
"""

from __future__ import annotations

import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from slipstream import failpoints as fp
from slipstream.engine.context import DeployContext
from slipstream.engine.failures import Canceled, CancelToken, DeployFailed
from slipstream.engine.gate import Gate
from slipstream.engine.names import instance_id, server_name, server_of
from slipstream.engine.prepare import build_once, pre_deploy_snapshots, prepare_build, provision, prune_images
from slipstream.engine.release import BuildRef, Release, hostname
from slipstream.engine.retention import collect_after_live
from slipstream.engine.settle import release_fallback, settle
from slipstream.errors import SlipstreamError
from slipstream.logs.model import Source, Stream
from slipstream.runtime.oneoff import CANCELED_EXIT_CODE
from slipstream.state.store import InstanceRecord
from slipstream.states import DeployKind, DeployStatus, ServiceType

log = logging.getLogger("slipstream.engine")


class DeployRun:
    """One run of the state machine; the queue creates one per deploy and calls :meth:`run`."""

    def __init__(self, ctx: DeployContext, deploy_id: int, token: CancelToken | None = None) -> None:
        self.ctx = ctx
        self.id = deploy_id
        self.token = token or CancelToken()
        self.canceled = self.token.event  # what the run's waits poll
        self.rec = ctx.store.deploy(deploy_id)
        self.service = self.rec.service
        self.payload = ctx.store.deploy_release(deploy_id)
        self.release = Release.from_dict(self.payload)
        self.t0 = time.monotonic()
        self.new: list[tuple[str, str, int]] = []  # (instance id, server name, port)
        self.snapshots: list[Any] = []  # pre-deploy database snapshots
        self.stopped_old: list[InstanceRecord] = []  # old instances stopped before the new start
        self.flipped = False
        self.falling_back = False  # the old release is held as the new one's backup (settle window)

    # -- helpers ------------------------------------------------------------------------------
    def say(self, message: str, kind: str = "step") -> None:
        self.ctx.store.event(kind, self.ctx.masker.mask(message), service=self.service, deploy_id=self.id)

    def to(
        self, status: DeployStatus, message: str | None = None, *, step: str | None = None, since: float = 0
    ) -> None:
        """Record a transition (and, with ``step``, how long that step took since ``since``)."""
        timed = (step, time.monotonic() - since) if step else None
        self.ctx.store.transition(self.id, status, message=message, step=timed)

    def check_canceled(self) -> None:
        """End the run here if it was canceled (only ever before the flip)."""
        if self.token.canceled and not self.flipped:
            raise Canceled()

    def _seal(self) -> None:
        """From here on the deploy finishes: cancel and override no longer apply."""
        if not self.token.seal():  # canceled at the last moment: nothing was switched yet
            raise Canceled()
        self.flipped = True

    def _cancel_message(self) -> str:
        extra = "; " + self.hint_snapshots().lstrip("; ") if self.snapshots else ""
        return f"{self.token.reason}; the live release keeps serving{extra}"

    @property
    def type(self) -> ServiceType:
        return ServiceType(self.release.type)

    # -- the machine --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except (DeployFailed, Canceled) as exc:
            if isinstance(exc, Canceled):
                exc = DeployFailed(DeployStatus.CANCELED, self._cancel_message())
            self._cleanup_new()
            self._restore_old()
            message = self.ctx.masker.mask(exc.message)  # it may quote the app's own output
            self.say(f"{exc.status}: {message}", "error")
            self.ctx.store.transition(self.id, exc.status, message=message, finished=True)
        except Exception as exc:  # an engine defect: record it, keep the live release
            log.error("deploy %s crashed:\n%s", self.id, traceback.format_exc())
            try:
                release_fallback(self)
            except Exception:  # the proxy may be what failed; the next flip replaces them
                log.debug("release_fallback failed", exc_info=True)
            self._cleanup_new()
            self._restore_old()
            message = self.ctx.masker.mask(f"internal error during deploy: {exc.__class__.__name__}: {exc}")
            self.say(message, "error")
            self.ctx.store.transition(self.id, DeployStatus.UPDATE_FAILED, message=message, finished=True)

    def _run(self) -> None:
        what = {"rollback": "Rollback", "config": "Config change"}.get(self.rec.kind, "Deploy")
        self.say(f"-----> {what} {self.id} of {self.service} ({self.rec.source})")
        self.check_canceled()
        if provision(self):
            self.release = Release.from_dict(self.payload)
        build = self._build()
        fp.hit(fp.AFTER_BUILD)
        self.check_canceled()
        prepare_build(self, build)
        self._pre_deploy(build)
        self.check_canceled()
        if self.type == ServiceType.CRON:  # nothing runs until the schedule fires
            self._seal()
            self._go_live([])
            self.ctx.store.transition(self.id, DeployStatus.LIVE, finished=True)
            return
        old = self._old_instances()
        if old and self.release.stop_first:
            self._stop_old_first(old)
            old = []
        self._start(build)
        fp.hit(fp.AFTER_START)
        gate = Gate(self.ctx.instances, self.release, self.new, self.say, self.canceled)
        self._health(gate)
        if self.type.routed:
            self._stay_healthy(gate)
            self._flip(old)
        else:
            self._seal()
        settle(self, gate, old, build)
        self._go_live(old)
        prune_images(self, build)  # before the deploy is finished: the next one never waits on it
        collect_after_live(self.ctx, self.service, self.say)
        self._drain(old)

    def _build(self) -> BuildRef:
        store = self.ctx.store
        if self.rec.kind in (DeployKind.ROLLBACK, DeployKind.CONFIG) and self.rec.build_id is not None:
            b = store.build(self.rec.build_id)
            if b.status != "ok" or not b.workdir or not Path(b.workdir).is_dir():
                again = f"; deploy commit {b.commit_sha[:12]} again" if b.commit_sha else ""
                raise DeployFailed(DeployStatus.UPDATE_FAILED, f"build {b.id} is no longer on disk{again}")
            self.say(f"-----> Reusing build {b.id} (commit {(b.commit_sha or 'directory')[:12]}), no rebuild")
            fp.hit(fp.REUSE_BUILD)
            return BuildRef.of(b)
        return build_once(self)

    def _pre_deploy(self, build: BuildRef) -> None:
        cmd = self.release.pre_deploy_command
        if not cmd or (self.rec.kind in (DeployKind.ROLLBACK, DeployKind.CONFIG) and not self.rec.with_pre_deploy):
            return
        started = time.monotonic()
        self.to(DeployStatus.PRE_DEPLOY)
        pre_deploy_snapshots(self)
        self.check_canceled()
        self.say(f"-----> Running preDeployCommand: {cmd}")
        iid = f"{self.service}-predeploy"
        log_path = self.ctx.settings.instances_dir / f"{self.service}-d{self.id}-predeploy.log"
        if self.ctx.logs is not None:
            self.ctx.logs.watch(log_path, Source(self.service, Stream.PRE_DEPLOY, self.id))
        code = self.ctx.driver.run_once(
            cmd,
            build.workdir,
            self.ctx.instances.env(self.release, build, None, iid),
            log_path,
            timeout_s=3600,
            on_output=self._pre_deploy_output,
            cancel=self.canceled,
            image=build.image,
            user=None if build.image else self.ctx.instances.user_name(self.service),
            memory_limit_mb=self.release.memory_limit_mb,
            cpus=self.ctx.instances.cpus(self.release),
        )
        if self.ctx.logs is not None:
            self.ctx.logs.retire(log_path)
        self.to(DeployStatus.PRE_DEPLOY, step="pre_deploy", since=started)
        if code == CANCELED_EXIT_CODE and self.canceled.is_set():
            self.check_canceled()
        if code != 0:
            raise DeployFailed(
                DeployStatus.PRE_DEPLOY_FAILED,
                f"preDeployCommand exited with {code}; the live release keeps serving" + self.hint_snapshots(),
            )

    def _pre_deploy_output(self, line: str) -> None:
        fp.hit(fp.PRE_DEPLOY)  # the command is running: the chaos suite kills the daemon under it
        self.say(line, "pre_deploy")

    def hint_snapshots(self) -> str:
        """How to undo a half-applied migration: the snapshot and the exact restore command."""
        return "".join(
            f"; to undo its changes restore the snapshot taken before it: slipstream db restore {b.database} {b.id}"
            for b in self.snapshots
        )

    def _old_instances(self) -> list[InstanceRecord]:
        return [i for i in self.ctx.store.instances(self.service) if i.state == "live" and i.deploy_id != self.id]

    def _stop_old_first(self, old: list[InstanceRecord]) -> None:
        why = "it has a persistent disk" if self.release.disk else "it is a singleton worker"
        self.say(f"-----> Stopping the old release first: {why}, so two releases never overlap")
        started = time.monotonic()
        self.stopped_old = old
        with ThreadPoolExecutor(max_workers=len(old)) as pool:
            list(pool.map(self.ctx.instances.drain, old))
        self.to(DeployStatus.STARTING, step="stop_old", since=started)

    def _start(self, build: BuildRef) -> None:
        started = time.monotonic()
        self.to(DeployStatus.STARTING)
        n = max(1, self.release.num_instances)
        if self.type == ServiceType.PSERV:  # its listener first: servers join that backend, not an HTTP one
            self.ctx.proxy.set_private_route(self.service)
        if build.image is not None:
            what = (self.release.container or {}).get("docker_command") or f"{build.image} (its CMD)"
        else:
            what = self.release.start_command or ""
        self.say(f"-----> Starting {n} instance{'s' if n > 1 else ''}: {what}")
        for i in range(1, n + 1):
            port = self.ctx.instances.pick_port({p for _, _, p in self.new})
            iid, name = instance_id(self.service, self.id, i), server_name(self.id, i)
            self.new.append((iid, name, port))
            try:
                self.ctx.instances.start(self.ctx.instances.spec(iid, self.id, port, self.release, build))
            except SlipstreamError as exc:
                raise DeployFailed(
                    DeployStatus.UPDATE_FAILED, f"{exc.message}; the live release keeps serving"
                ) from None
            if self.type.routed:
                self.ctx.proxy.add_server(self.service, name, port)
        self.to(DeployStatus.STARTING, step="start", since=started)

    def _health(self, gate: Gate) -> None:
        started = time.monotonic()
        self.to(DeployStatus.HEALTH_CHECK)
        if not self.type.routed:
            grace = self.ctx.settings.worker_grace_s
            self.say(f"-----> Waiting {grace:g} s: a worker is healthy when it is still running")
            gate.worker_grace(grace)
        else:
            what = f"GET {self.release.health_check_path}" if self.release.health_check_path else "open port"
            self.say(f"-----> Waiting for health check ({what})")
            fp.hit(fp.HEALTH)
            took = gate.wait_healthy(self.ctx.settings.health_deadline_s)
            self.say(f"       healthy after {took:.2f} s")
        self.to(DeployStatus.HEALTH_CHECK, step="health", since=started)

    def _stay_healthy(self, gate: Gate) -> None:
        """Before any traffic the new instances stay healthy a moment (like minReadySeconds). A
        rollback skips it: its release proved itself when it was live, and the settle window after
        the flip still moves traffic back if it fails."""
        seconds = self.ctx.settings.min_healthy_s
        if seconds <= 0:
            return
        if self.rec.kind == DeployKind.ROLLBACK:  # the very release (build and env) already ran live
            self.say(f"       deploy {self.rec.rollback_of} ran this release live before: no stability wait")
            return
        started = time.monotonic()
        fp.hit(fp.STAY_HEALTHY)
        gate.stay_healthy(seconds)
        self.to(DeployStatus.HEALTH_CHECK, step="min_healthy", since=started)

    def _flip(self, old: list[InstanceRecord]) -> None:
        started = time.monotonic()
        self._seal()
        self.to(DeployStatus.FLIPPING)
        fp.hit(fp.BEFORE_FLIP)
        if self.type == ServiceType.PSERV:
            self.ctx.proxy.set_private_route(self.service)
        else:
            self.ctx.proxy.set_route(self.service, list(self.release.hosts or (hostname(self.service),)))
        drain = [server_of(i) for i in old]
        # the old release stays behind the new one as a backup until the settle window ends
        fallback = drain if self.ctx.settings.settle_s > 0 else []
        self.ctx.proxy.switch(self.service, ready=[n for _, n, _ in self.new], drain=drain, fallback=fallback)
        self.falling_back = bool(fallback)
        fp.hit(fp.AFTER_FLIP)
        self.to(DeployStatus.FLIPPING, step="flip", since=started)
        self.say(f"-----> Traffic switched to deploy {self.id} in {1000 * (time.monotonic() - started):.1f} ms")

    def _go_live(self, old: list[InstanceRecord]) -> None:
        store = self.ctx.store
        previous = store.service(self.service).live_deploy_id
        store.promote(self.id, [iid for iid, _, _ in self.new], [i.id for i in old], total_s=time.monotonic() - self.t0)
        fp.hit(fp.PROMOTED)
        if previous is not None and previous != self.id:
            prev = store.deploy(previous)
            if prev.status == DeployStatus.LIVE:
                store.transition(previous, DeployStatus.DEACTIVATED, message=f"replaced by deploy {self.id}")
        self.new = []
        self.say(f"-----> Deploy {self.id} is live")

    def _drain(self, old: list[InstanceRecord]) -> None:
        if not old:
            self.ctx.store.transition(self.id, DeployStatus.LIVE, finished=True)
            return
        started = time.monotonic()
        self.say(f"-----> Draining {len(old)} old instance{'s' if len(old) > 1 else ''}")
        fp.hit(fp.DRAIN)
        with ThreadPoolExecutor(max_workers=max(1, len(old))) as pool:
            list(pool.map(self.ctx.instances.drain, old))
        self.ctx.store.transition(self.id, DeployStatus.LIVE, step=("drain", time.monotonic() - started), finished=True)

    def _restore_old(self) -> None:
        """After a failed stop-first deploy, start the old release again."""
        for inst in self.stopped_old:
            self.say(f"       starting {inst.id} of the previous release again")
            self.ctx.instances.restart(inst)
        self.stopped_old = []

    def _cleanup_new(self) -> None:
        fp.hit(fp.CLEANUP)
        for iid, name, _ in self.new:
            try:
                self.ctx.proxy.remove_server(self.service, name)
            except Exception:  # the server may never have been added
                log.debug("remove_server %s failed", name, exc_info=True)
            self.ctx.instances.stop(iid, timeout=5)
            self.ctx.store.delete_instance(iid)
        self.new = []

    def replace_release(self, **changes: Any) -> None:
        """Adjust the release for this run (a disk's paths, a static site's server) and record it, so
        every later start of these instances (restarts, a restored release) runs the same."""
        self.release = replace(self.release, **changes)
        self.payload = {**self.release.to_dict(), "_source": self.payload.get("_source") or {}}
        self.ctx.store.transition(self.id, DeployStatus(self.ctx.store.deploy(self.id).status), release=self.payload)
