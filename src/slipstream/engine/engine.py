"""The engine: owns the desired state and makes the machine match it.

Lifecycle:
1. ``start()`` reconciles: HAProxy is started or adopted with the live routes, live instances are
   re-adopted (pid + process start time) or started again, and deploys a previous daemon left half
   done are ended cleanly (their new instances stopped; the live release untouched).
2. ``deploy()``/``rollback()`` validate synchronously (unknown service or commit fails at once,
   nothing changed), record a queued deploy, and hand it to the service's worker thread. One deploy
   per service runs at a time; a newer request supersedes queued ones.
3. Instance events from the runtime keep routing honest: a crashed live instance leaves rotation and
   returns once it is healthy again.
4. ``close()`` stops supervising (apps and HAProxy keep serving); ``shutdown()`` stops everything.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from slipstream.blueprint import Blueprint, BlueprintError, load_blueprint
from slipstream.blueprint.plan import snapshot_database, snapshot_groups, snapshot_service
from slipstream.builds import Build, Builder, BuildSpec
from slipstream.engine.cron import CronScheduler
from slipstream.engine.dbs import DatabaseManager
from slipstream.engine.deployer import (
    ACTIVE_STATUSES,
    ROUTED_TYPES,
    BuildRef,
    DeployFailed,
    DeployRun,
    instance_id,
    server_name,
)
from slipstream.engine.health import check_http, check_tcp
from slipstream.engine.monitor import LiveMonitor
from slipstream.engine.release import Release, hostname, instance_env
from slipstream.engine.resolve import env_overrides, release_for, save_env_overrides
from slipstream.errors import InvalidInput, NotFound, SlipstreamError
from slipstream.proxy import Proxy, Route, ServerState
from slipstream.runner import run
from slipstream.runtime import InstanceSpec, InstanceState
from slipstream.secrets import MASK, Masker
from slipstream.settings import Settings, base_environment
from slipstream.state.store import InstanceRecord, Store

log = logging.getLogger("slipstream.engine")

SUPPORTED_TYPES = {"web", "pserv", "worker", "cron"}
UNSUPPORTED_RUNTIMES = {"docker", "image"}


class Engine:
    """The reconciler and deploy queue for every service on this machine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        proxy: Proxy,
        driver: Any,
        builder: Builder,
        masker: Masker,
        *,
        settle_s: float = 2.0,
        worker_grace_s: float = 2.0,
        min_healthy_s: float = 1.0,
        cluster: DatabaseManager | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.proxy = proxy
        self.driver = driver
        self.builder = builder
        self.masker = masker
        self.cluster = cluster
        self.settle_s = settle_s
        self.worker_grace_s = worker_grace_s
        self.min_healthy_s = min_healthy_s
        self.base_env = base_environment()
        self._lock = threading.RLock()
        self._queues: dict[str, list[int]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._specs: dict[str, InstanceSpec] = {}
        self._closing = threading.Event()
        self.cron = CronScheduler(self, max_run_s=float(settings.extra.get("SLIPSTREAM_CRON_MAX_SECONDS", 12 * 3600)))
        self.monitor = LiveMonitor(
            self,
            interval_s=float(settings.extra.get("SLIPSTREAM_LIVE_CHECK_INTERVAL", 5)),
            unroute_after_s=float(settings.extra.get("SLIPSTREAM_UNROUTE_AFTER", 15)),
            restart_after_s=float(settings.extra.get("SLIPSTREAM_RESTART_AFTER", 60)),
        )

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Reconcile with what is running (see the module docstring)."""
        for svc in self.store.services():
            env = self.store.service_env(svc.name)
            self.masker.add(v for k, v in env.items() if k in svc.config.get("secret_keys", ()) or len(v) >= 8)
        if self.cluster is not None:
            self.cluster.start()
        self.proxy.start(self._live_routes())
        for inst in self.store.instances():
            self._recover_instance(inst)
        for d in self.store.unfinished_deploys():
            if d.status == "queued":
                self._enqueue(d.service, d.id)
            elif d.status == "live":
                self.store.transition(d.id, "live", finished=True)
            else:
                self.store.transition(
                    d.id,
                    "update_failed",
                    finished=True,
                    message=f"interrupted by a daemon restart during {d.status}; the live release kept serving",
                )
        self._prune_proxy()
        self.cron.start()
        self.monitor.start()

    def _live_routes(self) -> list[Route]:
        routes = []
        for svc in self.store.services():
            if svc.live_deploy_id is None or svc.type not in ROUTED_TYPES:
                continue
            servers = tuple(
                ServerState(server_name(i.deploy_id, int(i.id.rsplit("-", 1)[1])), i.port or 0, "ready", 0)
                for i in self.store.instances(svc.name)
                if i.state == "live"
            )
            if svc.type == "pserv":
                routes.append(Route(svc.name, (), servers, kind="private", port=self._private_ports().get(svc.name)))
            else:
                routes.append(Route(svc.name, tuple(svc.config.get("hosts") or (hostname(svc.name),)), servers))
        return routes

    def _spec_for(self, inst: InstanceRecord) -> InstanceSpec | None:
        try:
            release = Release.from_dict(self.store.deploy_release(inst.deploy_id))
            d = self.store.deploy(inst.deploy_id)
            b = self.store.build(d.build_id) if d.build_id else None
        except NotFound:
            return None
        if b is None or not b.workdir:
            return None
        env = instance_env(
            release,
            base=self.base_env,
            path_prefix=b.path_prefix,
            extra=b.extra_env,
            port=inst.port,
            instance_id=inst.id,
            commit=b.commit_sha,
            http_port=self.settings.http_port,
        )
        return InstanceSpec(
            instance_id=inst.id,
            service=inst.service,
            deploy_id=inst.deploy_id,
            command=release.start_command or "",
            cwd=Path(b.workdir),
            env=env,
            log_path=self.settings.instances_dir / f"{inst.id}.log",
            port=inst.port,
            shutdown_delay_s=release.shutdown_delay_s,
        )

    def _recover_instance(self, inst: InstanceRecord) -> None:
        spec = self._spec_for(inst)
        adopted = bool(spec and inst.pid and inst.create_time and self.driver.adopt(spec, inst.pid, inst.create_time))
        if spec is not None:
            self._specs[inst.id] = spec
        if inst.state == "live" and spec is not None:
            if not adopted:
                status = self.driver.start(spec)
                self.store.put_instance(
                    InstanceRecord(
                        inst.id, inst.service, inst.deploy_id, inst.port, status.pid, status.create_time, "live"
                    )
                )
                self.store.event(
                    "instance", f"{inst.id} was not running after a daemon restart; started again", service=inst.service
                )
            return
        if adopted:
            self.driver.stop(inst.id, timeout=spec.shutdown_delay_s if spec else 5)
        self.store.delete_instance(inst.id)

    def _prune_proxy(self) -> None:
        """Remove proxy servers that belong to no live instance (left by an interrupted deploy)."""
        for route in self.proxy.routes():
            wanted = {
                server_name(i.deploy_id, int(i.id.rsplit("-", 1)[1]))
                for i in self.store.instances(route.service)
                if i.state == "live"
            }
            for s in route.servers:
                if s.name not in wanted:
                    self.proxy.remove_server(route.service, s.name)
                elif s.admin != "ready":
                    self.proxy.set_state(route.service, s.name, "ready")

    def close(self) -> None:
        """Stop supervising; apps and HAProxy keep serving."""
        self._closing.set()
        self.cron.close()
        self.monitor.close()
        for t in list(self._workers.values()):
            t.join(timeout=1)
        self.driver.close()
        if self.cluster is not None:
            self.cluster.close()

    def shutdown(self) -> None:
        """Stop every instance, HAProxy and the database cluster."""
        self._closing.set()
        self.cron.close()
        self.monitor.close()
        insts = self.store.instances()
        with ThreadPoolExecutor(max_workers=max(1, len(insts))) as pool:
            list(pool.map(lambda i: self.stop_instance(i.id, timeout=10), insts))
        for i in insts:
            self.store.set_instance_state(i.id, "stopped")
        self.driver.close()
        self.proxy.stop()
        if self.cluster is not None:
            self.cluster.stop()

    # -- registering services from a blueprint -----------------------------------------------
    def load(self, blueprint_path: Path) -> Blueprint:
        """Parse a blueprint, turning its errors into one clear InvalidInput."""
        if not blueprint_path.exists():
            raise InvalidInput(
                f"no blueprint at {blueprint_path}",
                "pass --blueprint FILE or run from the directory holding render.yaml",
            )
        try:
            return load_blueprint(blueprint_path)
        except BlueprintError as exc:
            raise InvalidInput(
                f"{blueprint_path} is not a valid blueprint:\n{exc}", f"run 'slipstream validate {blueprint_path}'"
            ) from None

    def release(
        self,
        bp: Blueprint,
        blueprint_path: Path,
        name: str,
        *,
        overrides: Any = None,
        pending: dict[str, str] | None = None,
    ) -> Release:
        """Resolve one service of a blueprint into a Release (see ``release_for`` for the options)."""
        try:
            spec = bp.service(name)
        except KeyError:
            names = ", ".join(s.name for s in bp.services) or "none"
            raise NotFound(f"no service '{name}' in {blueprint_path} (services: {names})") from None
        reason = unsupported(spec)
        if reason:
            raise InvalidInput(f"service '{name}' cannot run here: {reason}")
        release = release_for(
            bp,
            spec,
            self.store,
            self.cluster,
            self.settings.http_port,
            private_port=self.private_port,
            overrides=overrides,
            pending=pending,
        )
        self.masker.add(release.env[k] for k in release.secret_keys)
        return release

    # -- deploy, rollback ---------------------------------------------------------------------
    def deploy(
        self, service: str, *, blueprint: Path | None = None, commit: str | None = None, from_dir: Path | None = None
    ) -> int:
        """Queue a deploy of ``service``; raises at once (nothing changed) for bad input."""
        known = self._known(service)
        if blueprint is None:
            if known is None or not known.blueprint:
                raise NotFound(
                    f"unknown service '{service}'", "pass --blueprint FILE to deploy it from its render.yaml"
                )
            blueprint = Path(known.blueprint)
        blueprint = blueprint.resolve()
        bp = self.load(blueprint)
        release = self.release(bp, blueprint, service)
        repo = repo_root(blueprint.parent) if from_dir is None else None
        if from_dir is not None:
            if not from_dir.is_dir():
                raise InvalidInput(f"--from-dir {from_dir} is not a directory")
            source, sha = f"directory {from_dir}", None
        else:
            if repo is None:
                raise InvalidInput(
                    f"{blueprint.parent} is not inside a git repository", "commit it to git, or deploy with --from-dir"
                )
            sha = self.builder.resolve_commit(repo, commit, release.branch)
            source = f"commit {sha[:12]}"
        self.record_snapshot(bp, service, release)
        self.store.upsert_service(
            service,
            release.type,
            release.runtime,
            {**release.public(), "snapshot": snapshot_service(bp, bp.service(service))},
            release.env,
            str(blueprint),
            str(repo) if repo else None,
        )
        src = {
            "repo": str(repo) if repo else None,
            "from_dir": str(from_dir) if from_dir else None,
            "blueprint_dir": str(blueprint.parent),
        }
        deploy_id = self.store.new_deploy(
            service, "deploy", source=source, commit_sha=sha, release={**release.to_dict(), "_source": src}
        )
        self._enqueue(service, deploy_id)
        return deploy_id

    def apply(self, blueprint: Path) -> dict[str, Any]:
        """Deploy every service of a blueprint that slipstream can run; list the ones it skipped."""
        blueprint = blueprint.resolve()
        bp = self.load(blueprint)
        deploys, skipped = [], []
        for spec in bp.services:
            reason = unsupported(spec)
            if reason:
                skipped.append({"service": spec.name, "reason": reason})
                continue
            deploys.append(self.deploy(spec.name, blueprint=blueprint))
        return {"deploys": deploys, "skipped": skipped, "warnings": [str(w) for w in getattr(bp, "warnings", [])]}

    def record_snapshot(self, bp: Blueprint, service: str, release: Release) -> None:
        """Remember the databases and groups of an applied blueprint (for 'slipstream plan')."""
        state = self.plan_state()
        for db in bp.databases:
            if db.name in release.databases or db.name in state["databases"]:
                state["databases"][db.name] = snapshot_database(db)
        state["groups"].update(snapshot_groups(bp))
        self.store.keep_value(
            "plan-state", json.dumps({"databases": state["databases"], "groups": state["groups"]}, default=str)
        )

    def plan_state(self) -> dict[str, Any]:
        """The current state in the form 'slipstream plan' compares a blueprint with (no secrets)."""
        kept = json.loads(self.store.kept_values().get("plan-state", "{}"))
        return {
            "services": {
                s.name: s.config.get("snapshot", {"type": s.type, "runtime": s.runtime}) for s in self.store.services()
            },
            "databases": kept.get("databases", {}),
            "groups": kept.get("groups", {}),
        }

    def rollback(self, service: str, to: int | None = None, with_pre_deploy: bool = False) -> int:
        """Queue a redeploy of an earlier successful build (no rebuild)."""
        svc = self.store.service(service)
        history = self.store.deploys(service, limit=500)
        if to is not None:
            target = next((d for d in history if d.id == to), None)
            if target is None:
                raise NotFound(f"deploy {to} is not a deploy of {service}", f"run 'slipstream deploys {service}'")
            if target.status not in ("live", "deactivated") or target.build_id is None:
                raise InvalidInput(f"deploy {to} never went live ({target.status}); pick a successful deploy")
        else:
            target = next(
                (
                    d
                    for d in history
                    if d.id != svc.live_deploy_id
                    and d.build_id is not None
                    and d.status in ("live", "deactivated")
                    and (
                        svc.live_deploy_id is None
                        or d.id < svc.live_deploy_id
                        or d.build_id != self.store.deploy(svc.live_deploy_id).build_id
                    )
                ),
                None,
            )
            if target is None:
                raise NotFound(f"{service} has no earlier successful deploy to roll back to")
        release = self.store.deploy_release(target.id)
        deploy_id = self.store.new_deploy(
            service,
            "rollback",
            source=f"rollback to deploy {target.id}",
            build_id=target.build_id,
            commit_sha=target.commit_sha,
            rollback_of=target.id,
            with_pre_deploy=with_pre_deploy,
            release=release,
        )
        self._enqueue(service, deploy_id)
        return deploy_id

    def set_env(self, service: str, values: dict[str, str], unset: Sequence[str] = ()) -> int | None:
        """Change env values; a live service gets a new release from the same build (gated flip)."""
        bad = [k for k in [*values, *unset] if not ENV_KEY.match(k)]
        if bad:
            raise InvalidInput(f"not a valid env key: {', '.join(bad)}", "keys match [A-Za-z_][A-Za-z0-9_]*")
        overrides = env_overrides(self.store, service)
        for key, value in values.items():
            overrides["set"][key] = value
            if key in overrides["unset"]:
                overrides["unset"].remove(key)
        for key in unset:
            overrides["set"].pop(key, None)
            if key not in overrides["unset"]:
                overrides["unset"].append(key)
        pending = {f"{service}.{key}": value for key, value in values.items()}  # also answers sync: false
        self.masker.add(values.values())
        svc = self._known(service)
        release = None
        if svc is not None and svc.live_deploy_id is not None and svc.blueprint:
            blueprint = Path(svc.blueprint)  # check first: a refused change saves nothing
            try:
                release = self.release(self.load(blueprint), blueprint, service, overrides=overrides, pending=pending)
            except InvalidInput as exc:  # the message may quote a value just set: mask it
                raise InvalidInput(self.masker.mask(exc.message), exc.hint) from None
        for vid, value in pending.items():
            self.store.keep_value(vid, value)
        save_env_overrides(self.store, service, overrides)
        if release is None or svc is None or svc.live_deploy_id is None:
            return None
        live = self.store.deploy(svc.live_deploy_id)
        self.store.upsert_service(
            service, release.type, release.runtime, release.public(), release.env, svc.blueprint, svc.repo
        )
        changed = ", ".join([*(f"{k} set" for k in values), *(f"{k} unset" for k in unset)])
        deploy_id = self.store.new_deploy(
            service,
            "config",
            source=f"env change: {changed}",
            build_id=live.build_id,
            commit_sha=live.commit_sha,
            with_pre_deploy=False,
            release=release.to_dict(),
        )
        self._enqueue(service, deploy_id)
        return deploy_id

    def env(self, service: str) -> list[dict[str, Any]]:
        """The live env's keys with masked values and where each comes from."""
        svc = self.store.service(service)
        env = self.store.deploy_release(svc.live_deploy_id).get("env", {}) if svc.live_deploy_id else {}
        overrides = env_overrides(self.store, service)
        return [
            {"key": k, "value": MASK, "source": "env set" if k in overrides["set"] else "blueprint"}
            for k in sorted(env)
        ]

    def _known(self, service: str) -> Any:
        try:
            return self.store.service(service)
        except NotFound:
            return None

    def _enqueue(self, service: str, deploy_id: int) -> None:
        with self._lock:
            queue = self._queues.setdefault(service, [])
            for older in queue:
                self.store.transition(older, "canceled", message=f"superseded by deploy {deploy_id}", finished=True)
            queue[:] = [deploy_id]
            worker = self._workers.get(service)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(target=self._work, args=(service,), daemon=True, name=f"deploy-{service}")
                self._workers[service] = worker
                worker.start()

    def _work(self, service: str) -> None:
        while not self._closing.is_set():
            with self._lock:
                queue = self._queues.get(service) or []
                if not queue:
                    self._workers.pop(service, None)
                    return
                deploy_id = queue.pop(0)
            try:
                DeployRun(self, deploy_id).run()
            except Exception as exc:  # a defect before the run could record it: end the deploy
                log.exception("deploy %s could not run", deploy_id)
                self.store.transition(
                    deploy_id,
                    "update_failed",
                    finished=True,
                    message=f"internal error: {exc.__class__.__name__}: {exc}",
                )

    # -- callbacks used by DeployRun ----------------------------------------------------------
    def build(self, run: DeployRun, build_id: int) -> Build:
        release = self.store.deploy_release(run.id)
        src = release.get("_source", {})
        spec = BuildSpec(
            service=run.service,
            build_id=build_id,
            source_repo=Path(src["repo"]) if src.get("repo") else None,
            commit=run.rec.commit_sha,
            branch=run.release.branch,
            from_dir=Path(src["from_dir"]) if src.get("from_dir") else None,
            root_dir=run.release.root_dir,
            runtime=run.release.runtime,
            build_command=run.release.build_command,
            env={
                **self.base_env,
                **run.release.env,
                "RENDER": "true",
                "RENDER_SERVICE_NAME": run.service,
                "RENDER_GIT_COMMIT": run.rec.commit_sha or "",
            },
        )
        return self.builder.build(spec, on_output=lambda line: run.say(line, "build"))

    def before_pre_deploy(self, run: DeployRun) -> None:
        """Snapshot every database the service refers to before its migrations run."""
        names = list(run.release.databases)
        if not names or self.cluster is None:
            return
        run.say(f"-----> Snapshotting {', '.join(names)} before preDeployCommand")
        try:
            run.snapshots = self.cluster.snapshot(names)
        except Exception as exc:
            from slipstream.engine.deployer import DeployFailed

            raise DeployFailed(
                "pre_deploy_failed",
                f"the pre-deploy snapshot failed ({exc}); migrations did not run; the live release keeps serving",
            ) from None
        for b in run.snapshots:
            run.say(f"       snapshot {b.id} ({b.size_bytes} bytes)")

    def pre_deploy_hint(self, run: DeployRun) -> str:
        """How to undo a half-applied migration: the snapshot and the exact restore command."""
        snaps = getattr(run, "snapshots", [])
        return "".join(
            f"; to undo its changes restore the snapshot taken before it: slipstream db restore {b.database} {b.id}"
            for b in snaps
        )

    def remember(self, spec: InstanceSpec, build: BuildRef) -> None:
        self._specs[spec.instance_id] = spec

    def alive(self, iid: str) -> bool:
        try:
            return bool(self.driver.inspect(iid).state == InstanceState.RUNNING)
        except NotFound:
            return False

    def describe_exit(self, iid: str) -> str:
        try:
            st = self.driver.inspect(iid)
        except NotFound:
            return ""
        if st.state == InstanceState.RUNNING:
            return ""
        return f"; the process {st.last_event or 'exited'}" if st.last_event else "; the process exited"

    def stop_instance(self, iid: str, timeout: float | None = None) -> None:
        try:
            self.driver.stop(iid, timeout=timeout)
        except NotFound:
            pass
        self._specs.pop(iid, None)

    def drain_instance(self, inst: InstanceRecord) -> None:
        """Wait until HAProxy shows no request in flight to ``inst`` (bounded), then stop it."""
        name = server_name(inst.deploy_id, int(inst.id.rsplit("-", 1)[1]))
        spec = self._specs.get(inst.id)
        delay = spec.shutdown_delay_s if spec else 30.0
        deadline = time.monotonic() + delay
        if self._service_type(inst.service) not in ROUTED_TYPES:
            self.stop_instance(inst.id, timeout=delay)
            self.store.delete_instance(inst.id)
            return
        while time.monotonic() < deadline:
            states = {s.name: s for s in self.proxy.servers(inst.service)}
            s = states.get(name)
            if s is None or s.sessions == 0:
                break
            time.sleep(0.05)
        try:
            self.proxy.set_state(inst.service, name, "maint")
        except Exception:
            log.debug("set maint %s failed", name, exc_info=True)
        self.stop_instance(inst.id, timeout=max(1.0, deadline - time.monotonic()))
        try:
            self.proxy.remove_server(inst.service, name)
        except Exception:
            log.debug("remove_server %s failed", name, exc_info=True)
        self.store.delete_instance(inst.id)

    def _private_ports(self) -> dict[str, int]:
        """Stable loopback ports of the private services HAProxy listens for."""
        return {r.service: r.port for r in self.proxy.routes() if r.kind == "private" and r.port}

    def private_port(self, service: str) -> int:
        """The stable address of a private service (assigned on first use, kept for good)."""
        return self.proxy.set_private_route(service)

    def _service_type(self, service: str) -> str:
        try:
            return self.store.service(service).type
        except NotFound:
            return "web"

    def restart_instance(self, inst: InstanceRecord) -> None:
        """Start a stopped instance again from its recorded release (undo of a stop-first deploy)."""
        spec = self._spec_for(inst)
        if spec is None:
            return
        status = self.driver.start(spec)
        self._specs[inst.id] = spec
        self.store.put_instance(
            InstanceRecord(inst.id, inst.service, inst.deploy_id, inst.port, status.pid, status.create_time, "live")
        )
        if self._service_type(inst.service) in ROUTED_TYPES:
            name = server_name(inst.deploy_id, int(inst.id.rsplit("-", 1)[1]))
            self.proxy.add_server(inst.service, name, inst.port or 0)
            self.proxy.set_state(inst.service, name, "ready")

    def restart_live_instance(self, iid: str) -> None:
        """Stop and start a live instance with its own spec; it rejoins rotation once healthy."""
        inst = next((i for i in self.store.instances() if i.id == iid), None)
        spec = self._specs.get(iid) or (self._spec_for(inst) if inst else None)
        if inst is None or spec is None:
            return
        self.stop_instance(iid, timeout=spec.shutdown_delay_s)
        status = self.driver.start(spec)
        self._specs[iid] = spec
        self.store.put_instance(
            InstanceRecord(inst.id, inst.service, inst.deploy_id, inst.port, status.pid, status.create_time, "live")
        )
        name = server_name(inst.deploy_id, int(iid.rsplit("-", 1)[1]))
        threading.Thread(target=self._readmit, args=(inst, name), daemon=True).start()

    def disk_dir(self, service: str, name: str) -> Path:
        """Where a service's persistent disk lives (kept across deploys and rollbacks)."""
        return self.settings.home / "disks" / service / name

    def attach_disk(self, run: DeployRun, build: BuildRef) -> None:
        """Create the disk and expose it at mountPath: a symlink (relative paths: inside the build)."""
        disk = run.release.disk or {}
        target = self.disk_dir(run.service, str(disk.get("name") or "disk"))
        target.mkdir(parents=True, exist_ok=True)
        mount = Path(str(disk.get("mount_path") or "data"))
        link = mount if mount.is_absolute() else build.workdir / mount
        if link.is_symlink():
            if link.resolve() != target.resolve():
                raise DeployFailed(
                    "update_failed",
                    f"disk mountPath {mount} already links to {link.resolve()}; "
                    "is another service using the same mountPath?",
                )
        elif link.exists():
            raise DeployFailed(
                "update_failed",
                f"disk mountPath {mount} already exists and is not slipstream's "
                "disk; move it away or pick another mountPath",
            )
        else:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=True)
        run.release = replace(
            run.release,
            env={**run.release.env, "RENDER_DISK_MOUNT_PATH": str(link), "SLIPSTREAM_DISK_PATH": str(target)},
        )

    def prepare_build(self, run: DeployRun, build: BuildRef) -> None:
        """Per-kind steps after the build: a disk is attached, static sites get their Caddy config."""
        if run.release.disk:
            self.attach_disk(run, build)
        static = run.release.static
        if not static:
            return
        from slipstream.static import (
            HEALTH_PATH,
            caddy_command,
            render_caddy_config,
            resolve_publish_dir,
            write_caddy_config,
        )

        try:
            publish = resolve_publish_dir(build.workdir, str(static.get("publish_path") or "."))
            config = render_caddy_config(
                publish,
                [SimpleNamespace(**r) for r in static.get("routes", [])],
                [SimpleNamespace(**h) for h in static.get("headers", [])],
            )
        except SlipstreamError as exc:
            raise DeployFailed("build_failed", exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        path = build.workdir.parent / f"caddy-d{run.id}" / "caddy.json"
        write_caddy_config(path, config)
        run.release = replace(run.release, start_command=caddy_command(path), health_check_path=HEALTH_PATH)

    # -- runtime events -----------------------------------------------------------------------
    def on_instance_event(self, iid: str, kind: str, message: str) -> None:
        """Runtime callback: keep a crashed live instance out of rotation until it is healthy."""
        inst = next((i for i in self.store.instances() if i.id == iid), None)
        if inst is None:
            return
        self.store.event("instance", self.masker.mask(f"{iid}: {message}"), service=inst.service)
        if inst.state != "live" or self._service_type(inst.service) not in ROUTED_TYPES:
            return
        name = server_name(inst.deploy_id, int(iid.rsplit("-", 1)[1]))
        if kind == "exited":
            self.proxy.set_state(inst.service, name, "maint")
        elif kind in ("restarted", "started"):
            threading.Thread(target=self._readmit, args=(inst, name), daemon=True).start()
        if kind in ("restarted", "started"):
            try:
                st = self.driver.inspect(iid)
                self.store.put_instance(
                    InstanceRecord(inst.id, inst.service, inst.deploy_id, inst.port, st.pid, st.create_time, inst.state)
                )
            except NotFound:
                pass

    def _readmit(self, inst: InstanceRecord, name: str) -> None:
        release = Release.from_dict(self.store.deploy_release(inst.deploy_id))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not self._closing.is_set():
            if release.health_check_path:
                ok = check_http(
                    inst.port or 0,
                    release.health_check_path,
                    release.hosts[0] if release.hosts else hostname(inst.service),
                ).ok
            else:
                ok = check_tcp(inst.port or 0).ok
            if ok:
                self.proxy.set_state(inst.service, name, "ready")
                self.store.event("instance", f"{inst.id} is healthy again and back in rotation", service=inst.service)
                return
            time.sleep(0.1)

    # -- reading ------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """Services with their live deploy, instances and URLs (no env values)."""
        out = []
        for svc in self.store.services():
            live = self.store.deploy(svc.live_deploy_id) if svc.live_deploy_id else None
            active = next((d for d in self.store.deploys(svc.name, limit=5) if d.status in ACTIVE_STATUSES), None)
            instances = []
            for i in self.store.instances(svc.name):
                row: dict[str, Any] = {
                    "id": i.id,
                    "deploy": i.deploy_id,
                    "port": i.port,
                    "pid": i.pid,
                    "state": i.state,
                }
                try:
                    st = self.driver.inspect(i.id)
                    row.update(
                        pid=st.pid,
                        process=str(st.state),
                        restarts=st.restarts,
                        next_restart_in_s=st.next_restart_in_s,
                        last_event=st.last_event,
                    )
                except NotFound:
                    row.update(process="unknown")
                instances.append(row)
            hosts = svc.config.get("hosts") or [hostname(svc.name)]
            out.append(
                {
                    "name": svc.name,
                    "type": svc.type,
                    "runtime": svc.runtime,
                    "url": f"http://{hosts[0]}:{self.settings.http_port}"
                    if svc.type == "web"
                    else (
                        f"tcp://127.0.0.1:{self._private_ports().get(svc.name)} (private)"
                        if svc.type == "pserv" and svc.name in self._private_ports()
                        else None
                    ),
                    "live_deploy": live.public() if live else None,
                    "active_deploy": active.public() if active else None,
                    "instances": instances,
                }
            )
        return out

    def logs(self, service: str, n: int = 100, cursor: dict[str, int] | None = None) -> dict[str, Any]:
        """Last ``n`` lines of the service's live instances (or new lines since ``cursor``), masked."""
        self.store.service(service)
        files = sorted(self.settings.instances_dir.glob(f"{service}-d*.log"), key=lambda p: p.stat().st_mtime)
        live_ids = {i.id for i in self.store.instances(service)}
        lines: list[str] = []
        new_cursor: dict[str, int] = {}
        for f in files:
            iid = f.stem
            if cursor is None and iid not in live_ids and f is not files[-1]:
                continue
            start = (cursor or {}).get(iid, 0) if cursor is not None else 0
            try:
                with open(f, "rb") as fh:
                    fh.seek(start)
                    data = fh.read()
                    new_cursor[iid] = start + len(data)
            except OSError:
                continue
            lines.extend(f"[{iid}] {line}" for line in data.decode(errors="replace").splitlines())
        if cursor is None:
            lines = lines[-n:]
        return {"lines": [self.masker.mask(line) for line in lines], "cursor": new_cursor}


ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def unsupported(spec: Any) -> str | None:
    """Why slipstream cannot run this blueprint service yet, or None."""
    if spec.type not in SUPPORTED_TYPES:
        return f"type {spec.type} is not supported by slipstream yet"
    if spec.runtime in UNSUPPORTED_RUNTIMES:
        return f"runtime {spec.runtime} needs a container engine, which slipstream does not have"
    return None


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``, or None."""
    r = run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], check=False, timeout=10)
    return Path(r.stdout.strip()) if r.returncode == 0 else None


def default_instance_names(service: str, deploy_id: int, n: int) -> Sequence[str]:
    """Instance ids of a deploy (for tests and the CLI)."""
    return [instance_id(service, deploy_id, i) for i in range(1, n + 1)]
