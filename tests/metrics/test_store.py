"""The SQLite metrics store: round trips, rollups by each metric's rule, retention, resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import InvalidInput
from slipstream.metrics.histogram import Histogram
from slipstream.metrics.model import KINDS, Row
from slipstream.metrics.store import (
    CHUNK_S,
    ROLLUP_DELAY,
    MetricsStore,
    choose_resolution,
    pack,
    pack_chunk,
    rollup_values,
    unpack,
    unpack_chunk,
)

T0 = 1_700_000_040  # a minute boundary


@pytest.fixture
def store(tmp_path: Path) -> MetricsStore:
    s = MetricsStore(tmp_path / "metrics.db")
    yield s  # type: ignore[misc]
    s.close()


def http(ts: int, requests: float, e5: float, avg: float | None = 5.0) -> Row:
    return Row("http", "web", "web", ts, (requests, 0.0, requests - e5, 0.0, 0.0, e5, avg, avg, 1.0))


def inst(ts: int, name: str, rss: float, restarts: float = 0) -> Row:
    return Row("instance", name, "web", ts, (10.0, rss, 512.0, restarts))


def test_pack_round_trip_and_old_rows() -> None:
    assert unpack(pack([1.5, None, 3.0]), 3) == (1.5, None, 3.0)
    assert unpack(pack([1.5]), 3) == (1.5, None, None)  # a row older than two new metrics


@pytest.mark.parametrize(
    ("kind", "rows", "expected_first_metrics"),
    [
        ("http", [(10, 1), (20, 2), (None, None)], (30.0, 3.0)),  # counts add up: requests, 1xx
        ("instance", [(10, 100), (20, 200), (30, None)], (20.0, 150.0)),  # cpu, rss: means of what was measured
        ("database", [(1, 5), (3, 6)], (2.0, 6.0)),  # connections mean, size last
        ("cron", [(1, 0), (1, 1)], (2.0, 1.0)),  # runs and failures add up
    ],
)
def test_rollup_rules(
    kind: str, rows: list[tuple[float | None, float | None]], expected_first_metrics: tuple[float, float]
) -> None:
    width = len(KINDS[kind])
    full = [(a, b, *([None] * (width - 2))) for a, b in rows]
    assert rollup_values(kind, full)[:2] == expected_first_metrics


def test_rollup_max_and_last() -> None:
    rows = [(1.0, 100.0, 5.0, 10.0, 0.0), (2.0, 101.0, 50.0, 20.0, 1.0), (3.0, 102.0, 7.0, 30.0, 0.0)]
    assert rollup_values("database", rows) == (2.0, 102.0, 50.0, 30.0, 1.0)


def test_record_and_query_raw(store: MetricsStore) -> None:
    store.record([http(T0, 100, 20), inst(T0, "web-d3-1", 64), Row("keyvalue", "cache", "cache", T0, (1.0, 0.0, 2.0))])
    store.record([http(T0 + 10, 50, 0), inst(T0 + 10, "web-d3-1", 66)])
    result = store.query("web", T0 - 10, T0 + 20, resolution=10)  # rows in (since, until]
    series = {(s.kind, s.entity, s.metric): s.points for s in result.series}
    assert series[("http", "web", "requests")] == ((T0, 100.0), (T0 + 10, 50.0))
    assert series[("instance", "web-d3-1", "rss_mb")] == ((T0, 64.0), (T0 + 10, 66.0))
    assert not any(k[0] == "keyvalue" for k in series)  # another owner
    assert store.owners() == ["cache", "web"]


def test_a_round_written_twice_replaces(store: MetricsStore) -> None:
    store.record([http(T0, 100, 20)])
    store.record([http(T0, 7, 0)])
    assert store.count_rows(10) == 1
    assert store.query("web", T0 - 10, T0 + 10, 10).series[0].points == ((T0, 7.0),)


def test_bad_rows_are_refused_before_anything_is_written(store: MetricsStore) -> None:
    with pytest.raises(InvalidInput):
        store.record([http(T0, 1, 0), Row("http", "web", "web", T0 + 10, (1.0,))])
    assert store.count_rows(10) == 0


def test_maintain_rolls_up_complete_minutes(store: MetricsStore) -> None:
    store.record([http(T0 + 10 * i, 60, 6 if i < 3 else 0, avg=float(i)) for i in range(6)])
    store.record([http(T0 + 60, 1, 0)])  # the next minute: not complete yet
    assert store.maintain(T0 + 60 + ROLLUP_DELAY - 1) == 0  # minute T0 ended, but too recently
    assert store.maintain(T0 + 60 + ROLLUP_DELAY) == 1
    minute = store.query("web", T0 - 60, T0 + 120, resolution=60)
    values = {s.metric: s.points for s in minute.series}
    assert values["requests"] == ((T0, 360.0),)
    assert values["http_5xx"] == ((T0, 18.0),)
    assert values["response_avg_ms"] == ((T0, 2.5),)
    assert store.maintain(T0 + 60 + ROLLUP_DELAY + 5) == 0  # nothing new
    assert store.maintain(T0 + 120 + ROLLUP_DELAY) == 1  # the second minute now


def test_latency_minutes_come_from_the_merged_histogram(store: MetricsStore) -> None:
    h = Histogram()
    for ms in [10.0] * 90 + [1000.0] * 10:
        h.add(ms)
    store.record_histogram("web", T0, h)
    # 10 s rows whose mean p95 would be misleading; the minute must use the histogram
    store.record([Row("latency", "web", "web", T0 + 10 * i, (10.0, 10.0, 10.0, 10.0, 10.0)) for i in range(6)])
    store.maintain(T0 + 60 + ROLLUP_DELAY)
    minute = {s.metric: s.points[0][1] for s in store.query("web", T0 - 60, T0 + 60, resolution=60).series}
    assert minute["samples"] == 100.0
    assert minute["latency_p50_ms"] == pytest.approx(10.0, rel=0.02)
    assert minute["latency_p95_ms"] == pytest.approx(1000.0, rel=0.02)
    window = store.query("web", T0, T0 + 60, resolution=10)
    assert window.histograms["web"].count == 100


def test_retention_bounds_the_file(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "m.db", raw_retention_s=120, rollup_retention_s=600, prune_every_s=60)
    for i in range(100):  # 1000 s of rounds for two instances; the first goes away half-way
        rows = [inst(T0 + 10 * i, "web-d3-2", 70)]
        if i < 50:
            rows.append(inst(T0 + 10 * i, "web-d3-1", 64))
        store.record(rows)
        store.maintain(T0 + 10 * i)
    assert store.count_rows(10) <= 120 // 10 + 6 + 1  # 120 s of one instance, pruned once a minute
    assert store.count_rows(60) <= 11 * 2  # 600 s of minutes, the gone instance's ageing out
    store.maintain(T0 + 10_000)
    assert store.count_rows(60) == 0 and store.owners() == []  # nothing seen for the retention: forgotten
    store.close()


def test_query_window_checks(store: MetricsStore) -> None:
    with pytest.raises(InvalidInput, match="before it starts"):
        store.query("web", T0, T0 - 1)
    with pytest.raises(InvalidInput, match="10 or 60"):
        store.query("web", T0, T0 + 10, resolution=30)


@pytest.mark.parametrize(
    ("since_ago", "length", "expected"),
    [(3600, 3600, 10), (6 * 3600, 6 * 3600, 10), (7 * 3600, 7 * 3600, 60), (3 * 86400, 3600, 60)],
)
def test_choose_resolution(since_ago: int, length: int, expected: int) -> None:
    now = 10_000_000.0
    assert choose_resolution(now - since_ago, now - since_ago + length, now) == expected


def test_chunk_round_trip() -> None:
    samples = [(T0 + 10, (1.0, None, 3.5)), (T0 + 3590, (0.0, 2.0, None))]
    data = pack_chunk(T0, 10, samples, 3)
    assert unpack_chunk(data, T0, 10, 3) == samples
    assert unpack_chunk(data, T0, 10, 4) == [(ts, (*v, None)) for ts, v in samples]  # a metric added since


def test_sealed_hours_read_back_the_same_and_are_small(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "m.db")
    start = T0 - T0 % 3600  # an hour boundary
    for i in range(2 * 360 + 12):  # two hours and two minutes of rounds
        ts = start + 10 * i
        store.record([http(ts, 100, i % 3), inst(ts, "web-d3-1", 64.0)])
        store.maintain(ts)
    before = store.query("web", start, start + 7200, resolution=10)
    store.maintain(start + 7320)  # the second hour seals now
    after = store.query("web", start, start + 7200, resolution=10)
    assert after.series == before.series
    assert len(after.series[0].points) == 720  # every 10 s sample of the two hours, none lost or doubled
    assert store.count_rows(10) == 2 * 360 * 2 + 13 * 2 - 2  # samples kept: sealed and open
    open_rows = store._db.execute("SELECT count(*) FROM points WHERE res=10").fetchone()[0]
    assert open_rows < 30  # only the minutes after the last sealed hour stay as rows
    store.close()


def test_sealed_chunks_expire_whole(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "m.db", raw_retention_s=3600, prune_every_s=60)
    start = T0 - T0 % 3600
    for i in range(4 * 360):
        store.record([inst(start + 10 * i, "web-d3-1", 64.0)])
        store.maintain(start + 10 * i)
    kept = store.count_rows(10)
    assert 360 <= kept <= 360 + CHUNK_S[10] // 10 + 60  # the retention, plus at most a span and a minute
    store.close()
