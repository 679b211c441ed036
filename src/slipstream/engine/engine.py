"""The engine: owns the desired state and makes the machine match it.

It wires the rooms of this package together and is the one object the API talks to:

- ``intake``: requests become checked, recorded, queued deploys (``deploy``, ``apply``, ...);
- ``queue``: one deploy per service at a time, Render's overlap policy, cancel;
- ``deployer``: the state machine of one deploy, through a narrow :class:`DeployContext`;
- ``instances``: the one instance-spec factory, starts, stops, drains, runtime events;
- ``reconcile``: start-up recovery and adoption;
- ``views``: status and logs.

Lifecycle: ``start()`` reconciles and starts the schedules; ``close()`` stops supervising (apps and
HAProxy keep serving); ``shutdown()`` stops everything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slipstream.engine import reconcile, views
from slipstream.engine.context import BuildControl, DeployContext, ImageControl
from slipstream.engine.cron import CronScheduler
from slipstream.engine.deployer import DeployRun
from slipstream.engine.failures import CancelToken
from slipstream.engine.instances import Instances
from slipstream.engine.intake import Intake
from slipstream.engine.monitor import LiveMonitor
from slipstream.engine.provision import Provisioner
from slipstream.engine.queue import DeployQueue
from slipstream.engine.removal import Removal
from slipstream.engine.retention import Collected, EventPruner, collect_builds
from slipstream.proxy.base import ProxyControl
from slipstream.runtime.base import Driver
from slipstream.secrets import Masker
from slipstream.settings import Settings, base_environment
from slipstream.state.store import Store
from slipstream.states import InstancePhase

if TYPE_CHECKING:
    from slipstream.engine.dbs import DatabaseManager
    from slipstream.engine.keyvalues import KeyValueManager
    from slipstream.engine.observe import Observability
    from slipstream.logs import LogPipeline
    from slipstream.osusers import ServiceUsers


class Engine:
    """The reconciler and deploy queue for every service on this machine."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        proxy: ProxyControl,
        driver: Driver,
        builder: BuildControl,
        masker: Masker,
        *,
        databases: DatabaseManager | None = None,
        keyvalues: KeyValueManager | None = None,
        images: ImageControl | None = None,
        logs: LogPipeline | None = None,
        observe: bool = False,
        service_users: ServiceUsers | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.databases = databases
        self.keyvalues = keyvalues
        self.log_pipeline = logs
        self._closing = threading.Event()
        base_env = base_environment()
        self.instances = Instances(
            settings, store, proxy, driver, masker, base_env, self._closing, logs, users=service_users
        )
        self.provisioner = Provisioner(store, proxy, masker, settings.http_port, databases, keyvalues)
        self.ctx = DeployContext(
            settings=settings,
            store=store,
            proxy=proxy,
            driver=driver,
            builder=builder,
            masker=masker,
            instances=self.instances,
            provisioner=self.provisioner,
            databases=databases,
            images=images,
            logs=logs,
            base_env=base_env,
        )
        self.queue = DeployQueue(store, self._run_deploy, settings.overlap, self._closing, on_idle)
        self.intake = Intake(self.ctx, self.queue)
        self.removal = Removal(self.ctx, self.queue, databases, keyvalues)
        self.observability: Observability | None = None
        if observe:  # metrics and alerts (the daemon's; in-process tests go without)
            from slipstream.engine.observe import Observability
            from slipstream.proxy.haproxy import Proxy

            real_proxy = proxy if isinstance(proxy, Proxy) else None  # its stats come off the admin socket
            self.observability = Observability(settings, store, self.instances, real_proxy, databases, keyvalues)
        self.cron = CronScheduler(self.ctx, max_run_s=settings.cron_max_s)
        self.event_pruner = EventPruner(store, settings.events_kept_days, settings.events_max)
        self.monitor = LiveMonitor(
            self.ctx,
            interval_s=settings.live_check_interval_s,
            unroute_after_s=settings.unroute_after_s,
            restart_after_s=settings.restart_after_s,
        )

    def _run_deploy(self, deploy_id: int, token: CancelToken) -> None:
        DeployRun(self.ctx, deploy_id, token).run()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Reconcile with what is running, then start the schedules."""
        if self.log_pipeline is not None:
            self.log_pipeline.start()
        if self.databases is not None:
            self.databases.start()
        if self.keyvalues is not None:
            self.keyvalues.start()
        reconcile.reconcile(self.ctx, self.queue.submit)
        tidy = getattr(self.ctx.driver, "remove_unsupervised", None)
        if callable(tidy):  # containers of deploys a previous daemon left half done
            tidy()
        if self.observability is not None:
            self.observability.start()
        self.cron.start()
        self.monitor.start()
        self.event_pruner.start()

    def close(self) -> None:
        """Stop supervising; apps and HAProxy keep serving."""
        self._closing.set()
        self.cron.close()
        self.monitor.close()
        self.event_pruner.close()
        if self.observability is not None:
            self.observability.stop()
        self.queue.join(timeout=1)
        self.ctx.driver.close()
        if self.databases is not None:
            self.databases.close()
        if self.keyvalues is not None:
            self.keyvalues.close()
        if self.log_pipeline is not None:
            self.log_pipeline.stop()

    def shutdown(self) -> None:
        """Stop every instance, HAProxy and the database cluster."""
        self._closing.set()
        self.cron.close()
        self.monitor.close()
        self.event_pruner.close()
        if self.observability is not None:
            self.observability.stop()
        insts = self.store.instances()
        with ThreadPoolExecutor(max_workers=max(1, len(insts))) as pool:
            list(pool.map(lambda i: self.instances.stop(i.id, timeout=10), insts))
        for i in insts:
            self.store.set_instance_state(i.id, InstancePhase.STOPPED)
        self.ctx.driver.close()
        self.ctx.proxy.stop()
        if self.databases is not None:
            self.databases.stop()
        if self.keyvalues is not None:
            self.keyvalues.stop()
        if self.log_pipeline is not None:
            self.log_pipeline.stop()

    # -- requests (see engine.intake) ------------------------------------------------------------
    def deploy(
        self,
        service: str,
        *,
        blueprint: Path | None = None,
        commit: str | None = None,
        from_dir: Path | None = None,
        project: str | None = None,
    ) -> int:
        return self.intake.deploy(service, blueprint=blueprint, commit=commit, from_dir=from_dir, project=project)

    def apply(self, blueprint: Path, project: str | None = None) -> dict[str, Any]:
        return self.intake.apply(blueprint, project)

    def rollback(self, service: str, to: int | None = None, with_pre_deploy: bool = False) -> int:
        return self.intake.rollback(service, to, with_pre_deploy)

    def set_env(self, service: str, values: dict[str, str], unset: list[str] | tuple[str, ...] = ()) -> int | None:
        return self.intake.set_env(service, values, unset)

    def env(self, service: str) -> list[dict[str, Any]]:
        return self.intake.env(service)

    def cancel(self, service: str) -> list[int]:
        return self.intake.cancel(service)

    def collect_builds(self, service: str | None = None, dry_run: bool = False) -> list[Collected]:
        """Remove build directories no rollback may need (``slipstream gc``)."""
        if service is not None:
            self.store.service(service)  # NotFound for an unknown name
        s = self.ctx.settings
        return collect_builds(self.store, self.ctx.builder, s.builds_dir, s.builds_kept, service, dry_run)

    def projects(self) -> list[dict[str, Any]]:
        """Every project with what it owns."""
        return [
            {"name": name, "resources": [{"kind": k, "name": n} for k, n in owned]}
            for name, owned in sorted(self.store.projects().items())
        ]

    def plan_state(self, project: str | None = None, blueprint: Path | None = None) -> dict[str, Any]:
        """What 'slipstream plan' compares ``blueprint`` with: its project's resources."""
        projects = self.intake.projects
        if project is None and blueprint is not None:
            project = projects.project_of(blueprint.resolve(), None)
        return projects.plan_state(project)

    # -- reading (see engine.views) --------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return views.status(self.ctx)

    def search_logs(self, service: str, req: views.LogRequest) -> dict[str, Any]:
        """Log lines from the searchable store; without one (in-process tests), the live
        instances' files."""
        if self.log_pipeline is None:
            return views.file_logs(self.ctx, service, req)
        return views.search_logs(self.ctx, self.log_pipeline.store, service, req)

    # -- runtime events ---------------------------------------------------------------------------
    def on_instance_event(self, iid: str, kind: str, message: str) -> None:
        """Runtime callback (the driver's ``on_event``)."""
        self.instances.on_event(iid, kind, message)
