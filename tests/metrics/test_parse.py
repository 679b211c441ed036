"""The pure parsers and builders of metrics/parse.py, as tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import CommandFailed, InvalidInput
from slipstream.metrics.fake import FakeBackend, render_show_stat
from slipstream.metrics.model import CronReading, CronRun, Figures, HttpFigures, InstanceReading
from slipstream.metrics.parse import (
    MB,
    HttpSnapshot,
    InstanceSnapshot,
    backup_reading,
    build_http_figures,
    build_instance_figures,
    build_rows,
    counter_delta,
    finished_since,
    keyvalue_reading,
    parse_cgroup_cpu,
    parse_cgroup_memory,
    parse_database_rows,
    parse_duration,
    parse_show_stat,
)

FIXTURE = Path(__file__).parent / "fixtures" / "haproxy-2.6-show-stat.csv"


def test_show_stat_of_a_real_haproxy_2_6() -> None:
    # captured from HAProxy 2.6.12 after 20 requests to web (be_00) and one to an unknown host
    counters = parse_show_stat(FIXTURE.read_text())
    assert sorted(counters) == ["be_00", "be_01", "no_route", "pbe_00"]
    web = counters["be_00"]
    assert (web.mode, web.requests, web.status["2xx"], web.status["5xx"]) == ("http", 20, 20, 0)
    assert (web.response_avg_ms, web.total_avg_ms, web.sessions) == (2.0, 2.0, 0)
    assert counters["no_route"].requests == 1 and counters["no_route"].status["5xx"] == 1
    assert counters["pbe_00"].mode == "tcp" and counters["pbe_00"].requests == 0
    assert counters["be_01"].response_avg_ms == 0.0


@pytest.mark.parametrize(
    "text",
    ["", "Unknown command.\n", "pxname,svname\nbe_00,BACKEND\n"],
)
def test_show_stat_refuses_what_is_not_csv(text: str) -> None:
    with pytest.raises(CommandFailed):
        parse_show_stat(text)


def test_show_stat_of_the_fake_reads_back() -> None:
    text = render_show_stat({"be_03": FakeBackend({"2xx": 7, "4xx": 2, "5xx": 1}, scur=3, rtime=12, ttime=40)})
    b = parse_show_stat(text)["be_03"]
    assert (b.requests, b.status["4xx"], b.sessions, b.response_avg_ms, b.total_avg_ms) == (10, 2, 3, 12.0, 40.0)


@pytest.mark.parametrize(
    ("previous", "current", "delta"),
    [(10, 15, 5), (10, 10, 0), (10, 3, 3), (0, 0, 0)],  # 10 -> 3: HAProxy restarted, all 3 are new
)
def test_counter_delta(previous: int, current: int, delta: int) -> None:
    assert counter_delta(previous, current) == delta


def _counters(backend: str, ok: int, err: int) -> dict[str, object]:
    return parse_show_stat(render_show_stat({backend: FakeBackend({"2xx": ok, "5xx": err})}))  # type: ignore[return-value]


def test_http_figures_from_two_reads() -> None:
    first, snaps = build_http_figures({}, _counters("be_00", 100, 0), {"be_00": "web"}, 1000.0)  # type: ignore[arg-type]
    assert first == {} and snaps["web"].backend == "be_00"  # first sight: no interval yet
    figures, _ = build_http_figures(snaps, _counters("be_00", 180, 20), {"be_00": "web"}, 1010.0)  # type: ignore[arg-type]
    web = figures["web"]
    assert (web.requests, web.status["2xx"], web.status["5xx"], web.interval_s) == (100, 80, 20, 10.0)
    assert web.requests_per_s == 10.0


@pytest.mark.parametrize(
    ("case", "backends_now", "counts_now", "expected"),
    [
        ("haproxy restarted: counters below the last read", {"be_00": "web"}, (5, 1), (6, 1)),
        ("web moved to another backend: no figures this round", {"be_01": "web"}, (500, 0), None),
        ("the backend now serves another service", {"be_00": "api"}, (500, 0), None),
    ],
)
def test_http_figures_across_resets_and_moves(
    case: str, backends_now: dict[str, str], counts_now: tuple[int, int], expected: tuple[int, int] | None
) -> None:
    before = {
        "web": HttpSnapshot(
            "be_00", parse_show_stat(render_show_stat({"be_00": FakeBackend({"2xx": 400, "5xx": 9})}))["be_00"], 0.0
        )
    }
    backend = next(iter(backends_now))
    counters = parse_show_stat(render_show_stat({backend: FakeBackend({"2xx": counts_now[0], "5xx": counts_now[1]})}))
    figures, _ = build_http_figures(before, counters, backends_now, 10.0)
    got = next(iter(figures.values()), None)
    assert (None if got is None else (got.requests, got.status["5xx"])) == expected, case


def test_tcp_backends_give_no_http_figures() -> None:
    counters = parse_show_stat(render_show_stat({"pbe_00": FakeBackend({}, mode="tcp")}))
    figures, snaps = build_http_figures({}, counters, {"pbe_00": "db-proxy"}, 1.0)
    assert figures == {} and snaps == {}


@pytest.mark.parametrize(
    ("version", "usage", "stat", "expected"),
    [
        (2, "104857600\n", "anon 50000000\ninactive_file 4857600\nactive_file 10\n", 100_000_000),
        (1, "2000\n", "cache 10\ntotal_inactive_file 500\n", 1500),
        (2, "100\n", "inactive_file 400\n", 0),  # never below zero
        (2, "", "", None),  # cgroup gone
        (2, "max\n", "", None),
    ],
)
def test_cgroup_memory(version: int, usage: str, stat: str, expected: int | None) -> None:
    assert parse_cgroup_memory(version, usage, stat) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n", 2.5), ("", None), ("user_usec 5\n", None)],
)
def test_cgroup_cpu(text: str, expected: float | None) -> None:
    assert parse_cgroup_cpu(text) == expected


def _instance(cpu: float, pid: int = 42, restarts: int = 0, memory: int = 64 * MB) -> InstanceReading:
    return InstanceReading("web-d3-1", "web", "running", pid, 1.5, restarts, 512, cpu, memory)


@pytest.mark.parametrize(
    ("case", "before", "now", "cpu"),
    [
        ("half a core over 10 s", _instance(10.0), _instance(15.0), 50.0),
        ("restarted under a new pid: no CPU figure", _instance(10.0), _instance(1.0, pid=43, restarts=1), None),
        (
            "no CPU reading",
            _instance(10.0),
            InstanceReading("web-d3-1", "web", "running", 42, 1.5, 0, None, None, None),
            None,
        ),
    ],
)
def test_instance_figures(case: str, before: InstanceReading, now: InstanceReading, cpu: float | None) -> None:
    figures, snaps = build_instance_figures({"web-d3-1": InstanceSnapshot(before, 100.0)}, [now], 110.0)
    f = figures["web-d3-1"]
    assert f.cpu_percent == cpu, case
    assert f.rss_mb == (None if now.memory_bytes is None else 64.0)
    assert snaps["web-d3-1"].reading == now


def test_database_rows_and_archiver() -> None:
    rows = [("app_db", 8 * MB, 3, 12.5), ("other", MB, 0, 0)]
    ok = parse_database_rows(rows, (30.0, None), {"app_db": "main"})
    assert [(r.name, r.connections, r.size_bytes, r.longest_transaction_s) for r in ok] == [
        ("main", 3, 8 * MB, 12.5),
        ("other", 0, MB, 0.0),
    ]
    assert ok[0].wal_archived_age_s == 30.0 and ok[0].wal_failing_for_s is None
    failing = parse_database_rows(rows, (400.0, 5.0), {})  # failed 5 s ago, last success 400 s ago
    assert failing[0].wal_failing_for_s == 400.0
    recovered = parse_database_rows(rows, (2.0, 60.0), {})  # a success after the failure
    assert recovered[0].wal_failing_for_s is None
    never = parse_database_rows(rows, (None, 10.0, 900.0), {})  # never archived, failing since the server began
    assert never[0].wal_failing_for_s == 900.0


def test_keyvalue_reading_from_info() -> None:
    r = keyvalue_reading("cache", {"used_memory": "1048576", "maxmemory": "0", "connected_clients": "4"})
    assert (r.used_memory_bytes, r.maxmemory_bytes, r.clients) == (MB, 0, 4)
    with pytest.raises(CommandFailed, match="cache"):
        keyvalue_reading("cache", {"used_memory": "1"})


def test_backup_reading() -> None:
    r = backup_reading("main", [(100.0, "ok"), (200.0, "failed"), (150.0, "ok")], 86400, 50.0)
    assert (r.last_ok_at, r.last_failed_at) == (150.0, 200.0)
    assert backup_reading("main", [], 3600, 50.0).last_ok_at is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        (30, 30.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1 hour", "-5m", "5w", True, float("nan"), -1])
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(InvalidInput, match="write it like 30s, 15m, 1h or 2d"):
        parse_duration(text)  # type: ignore[arg-type]


def test_finished_cron_runs_are_counted_once() -> None:
    run = CronRun(7, "failed", 2, 100.0, 130.0)
    first_sight = {"job": CronReading("job", run, 3600)}
    assert finished_since({}, first_sight) == {}  # finished before we watched
    running = {"job": CronReading("job", CronRun(8, "running", None, 200.0, None), 3600)}
    done = {"job": CronReading("job", CronRun(8, "succeeded", 0, 200.0, 212.0), 3600)}
    assert finished_since(first_sight, running) == {}
    assert finished_since(running, done) == {"job": done["job"].last}
    assert finished_since(done, done) == {}


def test_rows_of_a_round() -> None:
    figures = Figures(
        at=1005.0,
        http={"web": HttpFigures("web", 10.0, 10, {"2xx": 8, "5xx": 2}, 1, 3.0, 4.0)},
    )
    rows = build_rows(figures, {"job": CronRun(8, "succeeded", 0, 200.0, 212.0)})
    assert [(r.kind, r.name, r.owner, r.ts) for r in rows] == [
        ("http", "web", "web", 1000),
        ("cron", "job", "job", 1000),
    ]
    assert rows[0].values == (10.0, 0.0, 8.0, 0.0, 0.0, 2.0, 3.0, 4.0, 1)
    assert rows[1].values == (1.0, 0.0, 12.0, 0.0)
