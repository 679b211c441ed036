"""Metrics and alerts as the engine feeds them: every 10 s the collector reads the proxy, the
instances, databases, key values, cron runs, backups, deploys and the disk (each through a plain
callable below, so a failing source is named and skipped), keeps the figures, and the alert
monitor judges them; HAProxy's access lines add per-request latencies for the percentiles.

Lifecycle: ``start`` after the engine reconciled; ``observe_access`` for every access line;
``set_overrides`` when a release goes live (a service's ``alerts`` key); ``stop`` at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slipstream.alerts import AlertMonitor, AlertStore, Dispatcher, SmtpConfig, WebhookConfig
from slipstream.alerts.rules import service_overrides
from slipstream.engine.release import Release
from slipstream.errors import InvalidInput
from slipstream.logs import LogLine, Stream
from slipstream.metrics import Collector, Figures, MetricsStore, Sources
from slipstream.metrics.model import (
    BackupReading,
    CronReading,
    DatabaseReading,
    DeployReading,
    InstanceReading,
    KeyValueReading,
)
from slipstream.metrics.parse import backup_reading, cron_run, deploy_reading
from slipstream.metrics.report import query_report, render_text
from slipstream.metrics.sources import (
    LazyTree,
    read_databases,
    read_disk,
    read_instance,
    read_keyvalue,
    read_proxy,
)
from slipstream.metrics.sources import schedule_interval as interval_of
from slipstream.settings import Settings
from slipstream.state.store import Store
from slipstream.states import DeployStatus, ServiceType

if TYPE_CHECKING:
    from slipstream.engine.dbs import DatabaseManager
    from slipstream.engine.instances import Instances
    from slipstream.engine.keyvalues import KeyValueManager
    from slipstream.metrics.prometheus import Listener
    from slipstream.proxy.haproxy import Proxy

log = logging.getLogger("slipstream.metrics")


class Observability:
    """The collector, its store, the alert monitor and where alerts go."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        instances: Instances,
        proxy: Proxy | None,
        databases: DatabaseManager | None,
        keyvalues: KeyValueManager | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.instances = instances
        self.proxy = proxy
        self.databases = databases
        self.keyvalues = keyvalues
        self.metrics = MetricsStore(settings.metrics_db)
        self.collector = Collector(self.metrics, self._sources(), interval=settings.metrics_interval_s)
        self.alert_store = AlertStore(settings.alerts_db)
        webhook = None
        if settings.alert_webhook_url:
            webhook = WebhookConfig(settings.alert_webhook_url, settings.alert_webhook_secret or "")
        smtp = None
        if settings.smtp_host and settings.smtp_from and settings.smtp_to:
            smtp = SmtpConfig(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_from,
                settings.smtp_to,
                starttls=settings.smtp_starttls == "on",
            )
        self.dispatcher = Dispatcher(webhook=webhook, smtp=smtp)
        self.monitor = AlertMonitor(self.alert_store, self.dispatcher)
        self.dispatcher.on_result = self.monitor.record_delivery
        self.collector.add_listener(self._judge)
        self._listener: Listener | None = None  # the optional loopback scrape listener
        self._live: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def _refresh_overrides(self) -> None:
        """Each service's alert settings come from its live release: read again when that changes."""
        for name, live in self.store.live_deploy_ids().items():  # no service config decoded each round
            if live is not None and self._live.get(name) != live:
                self._live[name] = live
                try:
                    self.set_overrides(name, Release.from_dict(self.store.deploy_release(live)))
                except InvalidInput as exc:  # checked at intake; an older release may predate a rule
                    log.warning("alert settings of %s ignored: %s", name, exc.message)

    def start(self) -> None:
        self._refresh_overrides()
        self.dispatcher.start()
        self.collector.start()
        if self.settings.metrics_listen:
            from slipstream.metrics.prometheus import start_listener

            host, _, port = self.settings.metrics_listen.rpartition(":")
            self._listener = start_listener(self.collector, int(port), host or "127.0.0.1", self.monitor.firing)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.collector.stop()
        self.dispatcher.stop()
        self.metrics.close()
        self.alert_store.close()

    def _judge(self, figures: Figures) -> None:
        self._refresh_overrides()
        for t in self.monitor.check(figures):
            self.store.event("alert", f"alert {t.rule} {t.state}: {t.message}", service=t.service or None)

    # -- inputs ---------------------------------------------------------------------------------
    def observe_access(self, lines: Iterable[LogLine]) -> None:
        """Per-request latencies from HAProxy's access lines (the percentiles' samples)."""
        for line in lines:
            fields = line.fields or {}
            status, total = fields.get("status"), fields.get("ta")
            if line.stream is Stream.ACCESS and line.service and isinstance(status, int) and total is not None:
                self.collector.observe_request(line.service, status, float(total), line.ts)

    def set_overrides(self, service: str, release: Release) -> None:
        """A service's alert settings from its release (the blueprint's ``alerts`` key)."""
        self.monitor.set_overrides(service, service_overrides(service, release.alerts or {}))

    # -- outputs --------------------------------------------------------------------------------
    def report(self, name: str, since: str) -> dict[str, Any]:
        report = query_report(self.metrics, name, since)
        return {**report, "text": render_text(report)}

    def prometheus(self) -> tuple[bytes, str]:
        from slipstream.metrics.prometheus import render_prometheus  # ~6 MB: loaded when first scraped

        return render_prometheus(self.collector, self.monitor.firing)

    def alerts(self) -> list[dict[str, Any]]:
        return self.monitor.listing()

    # -- sources --------------------------------------------------------------------------------
    def _sources(self) -> Sources:
        proxy = self.proxy
        return Sources(
            proxy=(lambda: read_proxy(proxy.socket_path, proxy.services_map)) if proxy is not None else None,
            instances=self._instances,
            databases=self._databases if self.databases is not None else None,
            keyvalues=self._keyvalues if self.keyvalues is not None else None,
            crons=self._crons,
            backups=self._backups if self.databases is not None else None,
            deploys=self._deploys,
            disks=lambda: [read_disk(self.settings.home)],
        )

    def _instances(self) -> Sequence[InstanceReading]:
        driver = self.instances.driver
        local = getattr(driver, "local", driver)
        cgroups = getattr(local, "memory_cgroups", None)
        limits = getattr(local, "limit_cgroups", None)  # every instance is in a pids cgroup: no /proc walk
        listed = next((base for c, base in limits.bases if c in ("pids", "freezer")), None) if limits else None
        readings = []
        tree = LazyTree()  # at most one pass over /proc per round, and none while every instance has its cgroup
        for inst in self.store.instances():
            status = self.instances.status(inst.id)
            if status is None:
                continue
            spec = self.instances.spec_of(inst.id)
            cap = spec.memory_limit_mb if spec is not None else None
            cgroup: Path | None = cgroups.base / inst.id if cgroups is not None and cap else None
            version = cgroups.version if cgroups is not None else 2
            listing = listed / inst.id if listed is not None else None
            readings.append(read_instance(status, inst.service, cap, cgroup, version, tree, listing))
        return readings

    def _databases(self) -> Sequence[DatabaseReading]:
        assert self.databases is not None
        names = {d["database_name"]: d["name"] for d in self.store.databases()}
        if not names:
            return []
        return read_databases(self.databases.cluster.admin_endpoint(), names)

    def _keyvalues(self) -> Sequence[KeyValueReading]:
        assert self.keyvalues is not None
        out = []
        for row in self.keyvalues.overview():
            if row["running"]:
                conn = self.keyvalues.connection(row["name"])
                out.append(read_keyvalue(row["name"], "127.0.0.1", int(row["port"]), "default", conn["password"]))
        return out

    def _crons(self) -> Sequence[CronReading]:
        now = time.time()
        out = []
        for svc in self.store.services(ServiceType.CRON):
            if svc.live_deploy_id is None:
                continue
            runs = self.store.cron_runs(svc.name, 1)
            schedule = self.store.deploy_release(svc.live_deploy_id).get("schedule")
            out.append(
                CronReading(
                    svc.name, cron_run(runs[0]) if runs else None, interval_of(schedule, now) if schedule else None
                )
            )
        return out

    def _backups(self) -> Sequence[BackupReading]:
        assert self.databases is not None
        out = []
        for db in self.store.databases():
            scheduled = [(b.created_at, b.status) for b in self.databases.backups(db["name"]) if b.kind == "scheduled"]
            out.append(backup_reading(db["name"], scheduled, self.databases.backup_interval_s, float(db["created_at"])))
        return out

    def _deploys(self) -> Sequence[DeployReading]:
        names = self.store.service_types()
        newest = self.store.newest_finished_deploys(among=5)
        finished = [d for name, d in sorted(newest.items()) if name in names]
        return [deploy_reading(d.public(), DeployStatus(d.status).failed) for d in finished]
