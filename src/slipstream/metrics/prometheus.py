"""The Prometheus text endpoint: the collector's latest figures through ``prometheus-client``.

``render_prometheus(collector)`` returns the body and content type for the API's ``GET /metrics``;
``start_listener(collector, port)`` serves the same on a loopback TCP port for a Prometheus server
to scrape (refused on any other address: the figures name every service of the machine).

Counters (``*_total``) are kept by the collector since the daemon started and never go down
across an HAProxy restart; gauges are the last round's. Latency comes twice: a cumulative
histogram (``histogram_quantile`` in PromQL) and the last closed 10 s bucket's p50/p95/p99.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from slipstream.errors import InvalidInput
from slipstream.metrics.collect import PROMETHEUS_BUCKETS, Collector
from slipstream.metrics.model import Figures
from slipstream.metrics.parse import MB

FiringAlerts = Callable[[], Sequence[tuple[str, str]]]  # () -> [(rule, service)] now firing


def _gauge(name: str, doc: str, labels: Sequence[str], rows: Iterable[tuple[Sequence[str], float | None]]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in rows:
        if value is not None:
            family.add_metric(list(values), value)
    return family


class FiguresCollector(PromCollector):
    """A prometheus-client collector reading a :class:`Collector` at each scrape."""

    def __init__(self, collector: Collector, alerts: FiringAlerts | None = None) -> None:
        self.collector = collector
        self.alerts = alerts

    def collect(self) -> Iterator[Metric]:
        f = self.collector.latest()
        totals = self.collector.totals()
        responses = CounterMetricFamily(
            "slipstream_http_responses", "HTTP responses by status class", labels=["service", "code"]
        )
        for service, by_code in sorted(totals.responses.items()):
            for code, n in sorted(by_code.items()):
                responses.add_metric([service, code], n)
        yield responses
        yield _gauge(
            "slipstream_http_requests_per_second",
            "requests per second over the last round",
            ["service"],
            (([s], h.requests_per_s) for s, h in sorted(f.http.items())),
        )
        yield _gauge(
            "slipstream_http_sessions",
            "requests in flight",
            ["service"],
            (([s], h.sessions) for s, h in f.http.items()),
        )
        yield _gauge(
            "slipstream_http_response_avg_seconds",
            "HAProxy's average response time over its last 1024 requests",
            ["service"],
            (([s], None if h.response_avg_ms is None else h.response_avg_ms / 1000) for s, h in f.http.items()),
        )
        duration = HistogramMetricFamily(
            "slipstream_http_request_duration_seconds", "total time of requests (access log)", labels=["service"]
        )
        for service, counts in sorted(totals.latency_buckets.items()):
            bounds = [*(f"{b:g}" for b in PROMETHEUS_BUCKETS), "+Inf"]
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            duration.add_metric([service], cumulative, totals.latency_sum_s.get(service, 0.0))
        yield duration
        yield _gauge(
            "slipstream_http_latency_seconds",
            "latency quantiles of the last closed 10 s bucket",
            ["service", "quantile"],
            (
                ([s, q], v / 1000)
                for s, lat in sorted(f.latency.items())
                for q, v in (("0.5", lat.p50_ms), ("0.95", lat.p95_ms), ("0.99", lat.p99_ms))
            ),
        )
        yield from self._instances(f)
        yield from self._stores(f)
        yield from self._jobs(f)
        up = GaugeMetricFamily(
            "slipstream_metrics_source_up", "1 when the source answered last round", labels=["source"]
        )
        for source in ("proxy", "instances", "databases", "keyvalues", "crons", "backups", "deploys", "disks"):
            if getattr(self.collector.sources, source) is not None:
                up.add_metric([source], 0.0 if source in f.errors else 1.0)
        yield up
        if self.alerts is not None:
            firing = GaugeMetricFamily("slipstream_alert_firing", "1 per firing alert", labels=["rule", "service"])
            for rule, service in sorted(set(self.alerts())):
                firing.add_metric([rule, service], 1.0)
            yield firing

    def _instances(self, f: Figures) -> Iterator[Metric]:
        rows = sorted(f.instances.values(), key=lambda i: i.instance_id)
        labels = ["service", "instance"]
        yield _gauge(
            "slipstream_instance_cpu_percent",
            "CPU of the instance (100 = one core)",
            labels,
            (([i.service, i.instance_id], i.cpu_percent) for i in rows),
        )
        yield _gauge(
            "slipstream_instance_memory_bytes",
            "memory of the instance (cgroup working set, else RSS)",
            labels,
            (([i.service, i.instance_id], None if i.rss_mb is None else i.rss_mb * MB) for i in rows),
        )
        yield _gauge(
            "slipstream_instance_memory_limit_bytes",
            "memory cap of the instance",
            labels,
            (([i.service, i.instance_id], None if i.memory_limit_mb is None else i.memory_limit_mb * MB) for i in rows),
        )
        restarts = CounterMetricFamily("slipstream_instance_restarts", "restarts after crashes", labels=labels)
        for i in rows:
            restarts.add_metric([i.service, i.instance_id], i.restarts)
        yield restarts

    def _stores(self, f: Figures) -> Iterator[Metric]:
        dbs = sorted(f.databases.values(), key=lambda d: d.name)
        yield _gauge(
            "slipstream_database_connections", "connections", ["database"], (([d.name], d.connections) for d in dbs)
        )
        yield _gauge(
            "slipstream_database_size_bytes", "database size", ["database"], (([d.name], d.size_bytes) for d in dbs)
        )
        yield _gauge(
            "slipstream_database_longest_transaction_seconds",
            "age of the oldest open transaction",
            ["database"],
            (([d.name], d.longest_transaction_s) for d in dbs),
        )
        yield _gauge(
            "slipstream_database_wal_archive_age_seconds",
            "time since the last WAL segment was archived",
            ["database"],
            (([d.name], d.wal_archived_age_s) for d in dbs),
        )
        kvs = sorted(f.keyvalues.values(), key=lambda k: k.name)
        yield _gauge(
            "slipstream_keyvalue_used_memory_bytes",
            "Redis used_memory",
            ["keyvalue"],
            (([k.name], k.used_memory_bytes) for k in kvs),
        )
        yield _gauge(
            "slipstream_keyvalue_maxmemory_bytes",
            "Redis maxmemory (0: none)",
            ["keyvalue"],
            (([k.name], k.maxmemory_bytes) for k in kvs),
        )
        yield _gauge(
            "slipstream_keyvalue_clients", "connected clients", ["keyvalue"], (([k.name], k.clients) for k in kvs)
        )
        disks = sorted(f.disks.values(), key=lambda d: d.path)
        yield _gauge("slipstream_disk_used_bytes", "bytes used", ["path"], (([d.path], d.used_bytes) for d in disks))
        yield _gauge(
            "slipstream_disk_size_bytes", "file system size", ["path"], (([d.path], d.total_bytes) for d in disks)
        )

    def _jobs(self, f: Figures) -> Iterator[Metric]:
        runs = [(c.service, c.last) for c in sorted(f.crons.values(), key=lambda c: c.service) if c.last is not None]
        ended = [(service, run, run.finished_at) for service, run in runs if run.finished_at is not None]
        yield _gauge(
            "slipstream_cron_last_run_timestamp_seconds",
            "when the last run started",
            ["service"],
            (([service], run.started_at) for service, run in runs),
        )
        yield _gauge(
            "slipstream_cron_last_duration_seconds",
            "duration of the last finished run",
            ["service"],
            (([service], end - run.started_at) for service, run, end in ended),
        )
        yield _gauge(
            "slipstream_cron_last_exit_code",
            "exit code of the last finished run",
            ["service"],
            (([service], run.exit_code) for service, run, _ in ended),
        )
        yield _gauge(
            "slipstream_backup_last_success_timestamp_seconds",
            "when the last good scheduled backup was taken",
            ["database"],
            (([b.database], b.last_ok_at) for b in sorted(f.backups.values(), key=lambda b: b.database)),
        )
        yield _gauge(
            "slipstream_deploy_last_failed",
            "1 when the latest finished deploy failed",
            ["service"],
            (([d.service], float(d.failed)) for d in sorted(f.deploys.values(), key=lambda d: d.service)),
        )


def build_registry(collector: Collector, alerts: FiringAlerts | None = None) -> CollectorRegistry:
    """A fresh registry holding only slipstream's figures (no process metrics of the daemon)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(collector, alerts))
    return registry


def render_prometheus(collector: Collector, alerts: FiringAlerts | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition of the latest figures and its content type."""
    return generate_latest(build_registry(collector, alerts)), CONTENT_TYPE_LATEST


@dataclass
class Listener:
    """A running loopback scrape endpoint; ``close()`` stops it."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_listener(
    collector: Collector, port: int, host: str = "127.0.0.1", alerts: FiringAlerts | None = None
) -> Listener:
    """Serve ``/metrics`` on ``host:port`` (loopback only; port 0 picks a free one)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidInput(
            f"the metrics listener address {host!r} is not a loopback address",
            "use 127.0.0.1 (put a reverse proxy with authentication in front to scrape from elsewhere)",
        )
    server, thread = start_http_server(port, addr=host, registry=build_registry(collector, alerts))
    return Listener(host, int(server.server_address[1]), server, thread)
