"""The collector with fake sources, the report the CLI prints, and sparklines."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.errors import InvalidInput, NotFound
from slipstream.metrics.collect import Collector, Sources
from slipstream.metrics.fake import FakeBackend, render_show_stat
from slipstream.metrics.model import (
    CronReading,
    CronRun,
    DatabaseReading,
    InstanceReading,
    KeyValueReading,
    ProxyReading,
)
from slipstream.metrics.parse import MB
from slipstream.metrics.report import build_report, query_report, render_text
from slipstream.metrics.sparkline import downsample, render_sparkline
from slipstream.metrics.store import MetricsStore

T0 = 1_700_000_040.0


class FakeMachine:
    """Counters a test moves between rounds; the collector reads them through plain callables."""

    def __init__(self) -> None:
        self.web = FakeBackend({"2xx": 0, "5xx": 0}, ttime=7)
        self.cpu = 0.0
        self.restarts = 0
        self.cron = CronReading("nightly", None, 3600)
        self.db_down = False

    def proxy(self) -> ProxyReading:
        return ProxyReading(render_show_stat({"be_00": self.web, "be_01": FakeBackend({})}), {"be_00": "web"})

    def instances(self) -> list[InstanceReading]:
        return [InstanceReading("web-d1-1", "web", "running", 100, 1.0, self.restarts, 256, self.cpu, 128 * MB)]

    def databases(self) -> list[DatabaseReading]:
        if self.db_down:
            raise ConnectionError("postgres is not answering")
        return [DatabaseReading("main", 4, 10 * MB, 0.5, 12.0, None)]

    def keyvalues(self) -> list[KeyValueReading]:
        return [KeyValueReading("cache", 2 * MB, 64 * MB, 3)]

    def crons(self) -> list[CronReading]:
        return [self.cron]

    def sources(self) -> Sources:
        return Sources(
            proxy=self.proxy,
            instances=self.instances,
            databases=self.databases,
            keyvalues=self.keyvalues,
            crons=self.crons,
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricsStore]:
    s = MetricsStore(tmp_path / "metrics.db")
    yield s
    s.close()


def run_rounds(
    collector: Collector, machine: FakeMachine, rounds: int, start: float, *, per_round: int = 50, errors: float = 0.2
) -> float:
    """Drive ``rounds`` rounds of traffic: ``per_round`` requests, a share of them 5xx, each also observed."""
    rng = random.Random(int(start))
    at = start
    for _ in range(rounds):
        bad = int(per_round * errors)
        machine.web.hrsp["2xx"] += per_round - bad
        machine.web.hrsp["5xx"] += bad
        machine.cpu += 2.5  # a quarter of a core over 10 s
        for i in range(per_round):
            collector.observe_request(
                "web", 500 if i < bad else 200, rng.lognormvariate(3, 0.5), at + rng.uniform(0, 9.9)
            )
        at += 10
        collector.collect(at)
    return at


def test_rounds_give_figures_rows_and_a_report(store: MetricsStore) -> None:
    machine = FakeMachine()
    collector = Collector(store, machine.sources())
    first = collector.collect(T0)
    assert first.http == {} and "main" in first.databases  # no interval yet for counters
    end = run_rounds(collector, machine, 30, T0)
    latest = collector.latest()
    assert latest.http["web"].requests == 50 and latest.http["web"].status["5xx"] == 10
    assert latest.instances["web-d1-1"].cpu_percent == pytest.approx(25.0)
    assert latest.latency["web"].count == 50
    report = build_report(store.query("web", end - 300, end, resolution=10))  # the last 30 rounds
    assert report["requests_per_s"] == pytest.approx(5.0)
    assert report["status"] == {"2xx": 1200, "3xx": 0, "4xx": 0, "5xx": 300}
    assert report["error_rate"] == pytest.approx(0.2)
    lat = report["latency_ms"]
    assert lat["source"] in ("access_log", "access_log_approximate")
    assert 15 < lat["p50"] < 25 < lat["p95"] < lat["p99"]
    assert report["instances"] == [
        {"id": "web-d1-1", "rss_mb": 128.0, "cpu_percent": 25.0, "memory_limit_mb": 256.0, "restarts": 0}
    ]
    names = {s["name"] for s in report["series"]}
    assert {"requests_per_s", "error_rate", "latency_p95_ms", "rss_mb", "cpu_percent"} <= names
    assert all(len(s["spark"]) <= 40 for s in report["series"])
    text = render_text(report)
    assert "p95" in text and "web-d1-1" in text and "5xx 300" in text


def test_window_percentiles_use_the_minute_histograms(store: MetricsStore) -> None:
    machine = FakeMachine()
    collector = Collector(store, machine.sources())
    end = run_rounds(collector, machine, 20, T0)  # 200 s: at least two whole minutes flushed
    report = build_report(store.query("web", T0, end, resolution=10))
    assert report["latency_ms"]["source"] == "access_log"


def test_without_access_log_the_proxy_average_is_said_plainly(store: MetricsStore) -> None:
    machine = FakeMachine()
    collector = Collector(store, Sources(proxy=machine.proxy))
    collector.collect(T0)
    machine.web.hrsp["2xx"] += 10
    collector.collect(T0 + 10)
    lat = build_report(store.query("web", T0, T0 + 20, resolution=10))["latency_ms"]
    assert lat == {"p50": None, "p95": None, "p99": None, "avg": 7.0, "source": "proxy_average"}


def test_a_failing_source_is_named_and_the_others_still_count(store: MetricsStore) -> None:
    machine = FakeMachine()
    machine.db_down = True
    collector = Collector(store, machine.sources())
    figures = collector.collect(T0)
    assert figures.errors == {"databases": "ConnectionError: postgres is not answering"}
    assert "cache" in figures.keyvalues and "web-d1-1" in figures.instances


def test_late_and_foreign_samples(store: MetricsStore) -> None:
    collector = Collector(store, Sources(), late_s=15)
    collector.observe_request("-", 503, 1, T0)  # no service (an unknown host): ignored
    collector.collect(T0 + 100)
    collector.observe_request("web", 200, 5, T0 + 50)  # its bucket closed long ago
    assert collector.late_samples == 1
    collector.observe_request("web", 200, 5, T0 + 95)  # still open
    assert collector.collect(T0 + 100).latency == {}
    assert collector.collect(T0 + 120).latency["web"].count == 1


def test_cron_runs_are_stored_when_they_finish(store: MetricsStore) -> None:
    machine = FakeMachine()
    collector = Collector(store, machine.sources())
    collector.collect(T0)
    machine.cron = CronReading("nightly", CronRun(1, "running", None, T0 + 5, None), 3600)
    collector.collect(T0 + 10)
    machine.cron = CronReading("nightly", CronRun(1, "failed", 3, T0 + 5, T0 + 17), 3600)
    collector.collect(T0 + 20)
    collector.collect(T0 + 30)
    report = build_report(store.query("nightly", T0, T0 + 40, resolution=10))
    assert report["cron"] == {
        "runs": 1,
        "failures": 1,
        "last_run_at": T0 + 20,
        "last_duration_s": 12.0,
        "last_exit_code": 3,
    }
    assert report["requests_per_s"] is None and report["instances"] == []


def test_database_and_keyvalue_reports(store: MetricsStore) -> None:
    machine = FakeMachine()
    collector = Collector(store, machine.sources())
    collector.collect(T0)
    assert build_report(store.query("main", T0 - 10, T0 + 10, 10))["database"] == {
        "connections": 4.0,
        "size_mb": 10.0,
        "longest_transaction_s": 0.5,
        "wal_archive_age_s": 12.0,
        "wal_archive_failing": 0.0,
    }
    assert build_report(store.query("cache", T0 - 10, T0 + 10, 10))["keyvalue"] == {
        "used_memory_mb": 2.0,
        "maxmemory_mb": 64.0,
        "clients": 3.0,
    }


def test_collector_thread_runs_rounds_and_stops(store: MetricsStore) -> None:
    seen: list[float] = []
    collector = Collector(store, Sources(), interval=0.01)
    collector.add_listener(lambda f: seen.append(f.at))
    collector.start()
    try:
        for _ in range(500):
            if len(seen) >= 3:
                break
            import time

            time.sleep(0.01)
    finally:
        collector.stop()
    assert len(seen) >= 3


def test_a_failing_listener_does_not_stop_the_round(store: MetricsStore) -> None:
    collector = Collector(store, Sources())
    calls: list[str] = []

    def broken(_: object) -> None:
        raise RuntimeError("boom")

    collector.add_listener(broken)
    collector.add_listener(lambda f: calls.append("second"))
    collector.collect(T0)
    assert calls == ["second"]


@pytest.mark.parametrize(
    ("values", "width", "expected"),
    [
        ([0, 1, 2, 3, 4, 5, 6, 7], 8, "▁▂▃▄▅▆▇█"),
        ([5, 5, 5], 8, "▄▄▄"),
        ([0, 0], 8, "▁▁"),
        ([1, None, 3], 8, "▁ █"),
        ([None, None], 8, "  "),
        ([], 8, ""),
        ([0, 0, 8, 8], 2, "▁█"),
    ],
)
def test_sparkline(values: list[float | None], width: int, expected: str) -> None:
    assert render_sparkline(values, width) == expected


def test_downsample_keeps_gaps_and_means() -> None:
    assert downsample([1, 3, None, None, 5, 7], 3) == [2.0, None, 6.0]
    with pytest.raises(ValueError):
        downsample([1], 0)


def test_query_report_as_the_api_calls_it(store: MetricsStore) -> None:
    machine = FakeMachine()
    collector = Collector(store, machine.sources())
    end = run_rounds(collector, machine, 12, T0)
    report = query_report(store, "web", "1m", now=end)
    assert report["status"]["5xx"] == 60 and report["resolution_s"] == 10  # the last 6 rounds
    with pytest.raises(NotFound, match="no metrics for 'nope'"):
        query_report(store, "nope", "1h", now=end)
    with pytest.raises(InvalidInput, match="between 1 s and 14 days"):
        query_report(store, "web", "30d", now=end)
