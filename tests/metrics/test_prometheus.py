"""The Prometheus text, parsed back with prometheus-client's own parser; the loopback listener."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from slipstream.errors import InvalidInput
from slipstream.metrics.collect import Collector, Sources
from slipstream.metrics.fake import FakeBackend, render_show_stat
from slipstream.metrics.model import (
    BackupReading,
    CronReading,
    CronRun,
    DatabaseReading,
    DeployReading,
    DiskReading,
    InstanceReading,
    KeyValueReading,
    ProxyReading,
)
from slipstream.metrics.parse import MB
from slipstream.metrics.prometheus import render_prometheus, start_listener
from slipstream.metrics.store import MetricsStore

T0 = 1_700_000_040.0


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    web = FakeBackend({"2xx": 0, "5xx": 0})

    def proxy() -> ProxyReading:
        return ProxyReading(render_show_stat({"be_00": web}), {"be_00": "web"})

    sources = Sources(
        proxy=proxy,
        instances=lambda: [InstanceReading("web-d1-1", "web", "running", 1, 1.0, 2, 256, 1.0, 100 * MB)],
        databases=lambda: [DatabaseReading("main", 3, 8 * MB, 1.5, 20.0, None)],
        keyvalues=lambda: [KeyValueReading("cache", MB, 0, 2)],
        crons=lambda: [CronReading("nightly", CronRun(4, "failed", 1, T0 - 100, T0 - 40), 3600)],
        backups=lambda: [BackupReading("main", T0 - 3600, None, 86400, T0 - 86400)],
        deploys=lambda: [DeployReading("web", 12, "build_failed", True, T0 - 5)],
        disks=lambda: [DiskReading("/srv", 100 * MB, 40 * MB)],
    )
    store = MetricsStore(tmp_path / "metrics.db")
    c = Collector(store, sources)
    c.collect(T0)
    web.hrsp["2xx"], web.hrsp["5xx"] = 90, 10
    for ms in (3.0, 30.0, 300.0, 3000.0):
        c.observe_request("web", 200, ms, T0 + 1)
    c.collect(T0 + 30)
    yield c
    store.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_text_parses_back_with_every_figure(collector: Collector) -> None:
    body, content_type = render_prometheus(collector, alerts=lambda: [("http5xxRate", "web")])
    assert content_type.startswith("text/plain; version=")
    got = samples(body.decode())
    assert got[("slipstream_http_responses_total", (("code", "5xx"), ("service", "web")))] == 10
    assert got[("slipstream_http_responses_total", (("code", "2xx"), ("service", "web")))] == 90
    assert got[("slipstream_http_requests_per_second", (("service", "web"),))] == pytest.approx(100 / 30)
    buckets = {k[1][0][1]: v for k, v in got.items() if k[0] == "slipstream_http_request_duration_seconds_bucket"}
    assert (buckets["0.005"], buckets["0.05"], buckets["0.5"], buckets["5"], buckets["+Inf"]) == (1, 2, 3, 4, 4)
    assert got[("slipstream_http_request_duration_seconds_count", (("service", "web"),))] == 4
    assert got[("slipstream_http_request_duration_seconds_sum", (("service", "web"),))] == pytest.approx(3.333)
    # nearest rank of 4 samples: p99 is the third (300 ms)
    assert got[("slipstream_http_latency_seconds", (("quantile", "0.99"), ("service", "web")))] == pytest.approx(
        0.3, rel=0.02
    )
    inst = (("instance", "web-d1-1"), ("service", "web"))
    assert got[("slipstream_instance_memory_bytes", inst)] == 100 * MB
    assert got[("slipstream_instance_memory_limit_bytes", inst)] == 256 * MB
    assert got[("slipstream_instance_restarts_total", inst)] == 2
    assert got[("slipstream_database_connections", (("database", "main"),))] == 3
    assert got[("slipstream_database_wal_archive_age_seconds", (("database", "main"),))] == 20
    assert got[("slipstream_keyvalue_clients", (("keyvalue", "cache"),))] == 2
    assert got[("slipstream_cron_last_exit_code", (("service", "nightly"),))] == 1
    assert got[("slipstream_cron_last_duration_seconds", (("service", "nightly"),))] == 60
    assert got[("slipstream_backup_last_success_timestamp_seconds", (("database", "main"),))] == T0 - 3600
    assert got[("slipstream_deploy_last_failed", (("service", "web"),))] == 1
    assert got[("slipstream_disk_used_bytes", (("path", "/srv"),))] == 40 * MB
    assert got[("slipstream_metrics_source_up", (("source", "proxy"),))] == 1
    assert got[("slipstream_alert_firing", (("rule", "http5xxRate"), ("service", "web")))] == 1


def test_before_the_first_round_the_text_is_valid_and_empty(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "m.db")
    body, _ = render_prometheus(Collector(store, Sources()))
    assert not [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]
    store.close()


def test_loopback_listener_serves_the_same_text(collector: Collector) -> None:
    listener = start_listener(collector, 0)
    try:
        response = httpx.get(f"http://127.0.0.1:{listener.port}/metrics", timeout=5)
        assert response.status_code == 200
        assert ("slipstream_database_connections", (("database", "main"),)) in samples(response.text)
    finally:
        listener.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "localhost.example", "::"])
def test_listener_refuses_anything_but_loopback(collector: Collector, host: str) -> None:
    with pytest.raises(InvalidInput, match="not a loopback address"):
        start_listener(collector, 0, host=host)
