"""Issue 13 in the bench: the access log's cost, the logs and metrics numbers, their targets and page."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from bench.access_bench import AccessSide, AccessSink, SinkStats, side_between
from bench.analysis import render_analysis
from bench.docs import render_markdown
from bench.logs_bench import Query, representative_queries, summarize_grep
from bench.metrics_bench import project_store_bytes
from bench.proxy_bench import ACCESS_LOG, LoadRun
from bench.report import Results, build_report, check_targets, render_table
from tests.bench_unit.test_bench_helpers import _load, _results

MB = 2**20


def _side(received: int, cpu_s: float) -> AccessSide:
    return AccessSide(received, received, 0, received // 9, received // 23, cpu_s, cpu_s / 2, cpu_s / 2, 0.6)


def _with_access_log(r: Results) -> Results:
    """Each round gets an access-log-on run: 60 % of the off run's req/s, a third of its lines received."""
    for row in r.rounds:
        off = row["slipstream"].result
        on = _load(off.rps * 0.6, 50.0)
        row[ACCESS_LOG] = LoadRun(on.result, {"haproxy_access_log": 60.0}, 0, 1.0, _side(on.result.requests // 3, 3.0))
    return r


def _grep_runs(cold: list[float], warm: list[float], found: int, candidates: int = 1000) -> list[dict[str, Any]]:
    return [
        {"found": found, "cold_ms": c, "warm_all": warm, "blocks": 1000, "candidate_blocks": candidates} for c in cold
    ]


def _logs() -> dict[str, Any]:
    rare, common, regex, none_, scan = representative_queries()
    return {
        "lines": 1_000_000,
        "file_mb": 85.0,
        "ingest": {
            "lines": 1_000_000,
            "wall_s": 16.0,
            "cpu_s": 15.0,
            "lines_per_s": 62_500.0,
            "lines_per_cpu_s": 66_666.7,
            "bytes_per_line": 42.0,
        },
        "paced": {
            "rate": 50_000,
            "seconds": 8.0,
            "cpu_percent_of_one_core": 77.0,
            "lines_behind_when_writer_stopped": 0,
            "catch_up_s": 0.0,
        },
        "grep": [
            summarize_grep(rare, _grep_runs([60.0, 50.0, 70.0], [30.0, 20.0], 5, candidates=44)),
            summarize_grep(common, _grep_runs([15.0, 12.0, 18.0], [6.0, 7.0], 100)),
            summarize_grep(regex, _grep_runs([30.0, 28.0, 40.0], [14.0, 15.0], 100)),
            summarize_grep(none_, _grep_runs([900.0, 850.0, 1200.0], [800.0, 700.0], 0)),
            summarize_grep(scan, _grep_runs([4500.0], [4000.0], 0)),
        ],
        "rss": {
            "written_mb": 100.0,
            "lines": 1_190_000,
            "stored": 1_190_000,
            "seconds": 20.0,
            "baseline_rss_mb": 78.6,
            "peak_rss_mb": 84.6,
            "growth_mb": 6.0,
        },
    }


def _metrics() -> dict[str, Any]:
    return {
        "services": 200,
        "hours": 2.0,
        "rounds": 720,
        "round_ms_median": 64.3,
        "round_ms_p95": 161.9,
        "round_ms_max": 498.7,
        "round_ms_without_fake_sources_median": 60.7,
        "round_ms_without_fake_sources_p95": 157.6,
        "observe_us_per_request": 7.2,
        "store_mb": 8.7,
        "store_mb_by_hour": [4.2, 8.7],
        "store_mb_24h_projected": 107.7,
        "data_mb": {"10s": 3.7, "1m": 0.7, "histograms": 1.5},
        "rows_10s": 446_560,
        "rows_1m": 73_939,
        "query_1h_ms": 9.2,
        "query_1h_points": 1102,
        "simulated_in_s": 57.1,
    }


def _full() -> Results:
    r = _with_access_log(_results())
    r.logs, r.metrics = _logs(), _metrics()
    r.machine = {"cores": 2, "unix_max_dgram_qlen": 10}
    return r


def test_access_log_keys_are_same_round_medians() -> None:
    p = build_report(_full())["proxy"]
    assert p["rps_access_log_off"] == p["slipstream_rps"] == 1350
    assert p["rps_access_log_on"] == 810 and p["access_log_cost_ratio"] == 0.6
    # wrk's text says 478,123 requests: a third of them received, 3 CPU seconds for those
    assert p["access_log_lines_received_per_request"] == pytest.approx(0.333, abs=0.001)
    assert p["access_log_daemon_cpu_us_per_request"] == round(3.0 / (478_123 // 3) * 1e6, 1)
    assert p["p99_ms_access_log_on"] == 50.0


def test_without_an_access_log_run_its_keys_are_null() -> None:
    p = build_report(_results())["proxy"]
    assert p["rps_access_log_on"] is None and p["access_log_cost_ratio"] is None
    assert p["slipstream_rps"] == 1350  # the existing keys keep their meaning


def test_logs_and_metrics_keys() -> None:
    report = build_report(_full())
    x = report["logs"]
    assert x["ingest_lines_per_s"] == 62_500 and x["ingest_lines_per_cpu_s"] == 66_667
    assert x["paced_cpu_percent"] == 77.0 and x["paced_lines_per_s"] == 50_000
    assert x["grep_cold_ms_max"] == 900.0  # the slowest targeted query's cold median; the full scan does not count
    assert x["grep_warm_ms_max"] == 750.0
    assert [g["targeted"] for g in x["grep"]] == [True, True, True, True, False]
    assert x["grep"][0] == {
        "query": "--grep ORDER-7f3a9c",
        "kind": "rare literal",
        "targeted": True,
        "found": 5,
        "cold_ms_median": 60.0,
        "warm_ms_median": 25.0,
    }
    assert (x["rss_growth_mb"], x["app_log_mb"]) == (6.0, 100.0)
    assert report["metrics"]["store_mb_24h_projected"] == 107.7 and report["metrics"]["round_ms_median"] == 64.3
    json.dumps(report)  # report.json stays plain JSON


def test_logs_targets() -> None:
    targets = {t.name: t for t in check_targets(build_report(_full()))}
    assert targets["log ingest"].met and "77 % of a core" in targets["log ingest"].measured
    assert not targets["grep over 1M stored lines"].met and targets["grep over 1M stored lines"].measured == "900 ms"
    assert targets["100 MB of app logs: daemon RSS growth"].met


def test_a_smaller_run_says_its_sizes_and_meets_no_size_target() -> None:
    r = _full()
    assert r.logs is not None
    r.logs["lines"], r.logs["rss"]["written_mb"] = 200_000, 20.0
    targets = {t.name: t for t in check_targets(build_report(r))}
    assert targets["grep over 1M stored lines"].measured == "900 ms (200,000 lines here)"
    rss = targets["100 MB of app logs: daemon RSS growth"]
    assert not rss.met and rss.measured == "+6.0 MB (20 MB here)"


def test_skipped_logs_and_metrics_are_named() -> None:
    r = _results()
    r.skipped = {"logs": "failed: boom"}
    report = build_report(r)
    assert report["logs"] == {"skipped": "failed: boom"} and report["metrics"] == {"skipped": "not measured"}
    targets = {t.name: t for t in check_targets(report)}
    assert targets["log ingest"].measured == "not measured: failed: boom" and not targets["log ingest"].met
    table = render_table(report, list(targets.values()))
    assert next(line for line in table.splitlines() if line.startswith("logs ")).split()[1:] == [
        "skipped",
        "failed:",
        "boom",
    ]
    page = render_markdown(r, report, list(targets.values()))
    assert "## 11. Logs" in page and "Not measured in this run: failed: boom." in page


def test_table_page_and_analysis_show_issue_13() -> None:
    r = _full()
    report = build_report(r)
    targets = check_targets(report)
    table = render_table(report, targets)
    assert "proxy + access log" in table and "0.60x off (1,350 req/s)" in table and "33% of lines received" in table
    assert "log grep" in table and "full scan 4500 ms" in table
    assert "store 8.7 MB after 2 h, 24 h 108 MB (projected)" in table
    analysis = render_analysis(r, targets)
    assert "**--grep.** The slowest query, `--grep '/timed out after \\d{6}ms/'" in analysis
    assert "1000 of the service's 1000 blocks" in analysis and "**Log ingest.**" not in analysis
    page = render_markdown(r, report, targets, analysis)
    for heading in (
        "## 10. HAProxy's access log",
        "## 11. Logs",
        "## 12. Metrics",
        "## Targets (issues #6, #10, #12, 13, 15)",
    ):
        assert heading in page
    assert "| 1 | 900 | 540 | 0.600 |" in page  # round 1: off, on, ratio
    assert "`net.unix.max_dgram_qlen` is 10" in page
    assert "| `--grep ORDER-7f3a9c` | rare literal | yes | 5 | 44 of 1,000 | 60.0 ms (60, 50, 70) | 25.0 ms |" in page
    assert "108 MB projected for 24 h" in page


def test_ingest_miss_names_what_held_it_down() -> None:
    r = _full()
    assert r.logs is not None
    r.logs["ingest"].update(lines_per_s=40_000.0, wall_s=25.0, cpu_s=15.0)  # 60 % of a core
    analysis = render_analysis(r, check_targets(build_report(r)))
    assert "**Log ingest.**" in analysis and "got 60 % of a core" in analysis and "other load" in analysis


def test_summarize_grep_takes_medians_over_processes_and_warm_samples() -> None:
    s = summarize_grep(Query("x", "common word"), _grep_runs([30.0, 10.0, 20.0], [1.0, 2.0, 9.0], 3))
    assert (s["cold_ms_median"], s["warm_ms_median"], s["runs"], s["cold_ms"]) == (20.0, 2.0, 3, [30.0, 10.0, 20.0])


def test_representative_queries_cover_issue_13s_kinds() -> None:
    qs = representative_queries()
    assert [q.targeted for q in qs] == [True, True, True, True, False] and [q.once for q in qs][-1]
    assert [q.label for q in qs][:3] == [
        "--grep ORDER-7f3a9c",
        "--grep timeout",
        "--grep '/timed out after \\d{5}ms/'",
    ]
    assert qs[1].spec == {"grep": "timeout"}


def test_project_store_bytes() -> None:
    assert project_store_bytes([], 24) is None and project_store_bytes([4 * MB], 24) is None
    assert project_store_bytes([4 * MB, 9 * MB], 24) == 9 * MB + 22 * 5 * MB
    assert project_store_bytes([1.0 * h for h in range(1, 26)], 24) == 24.0  # measured once simulated


def test_side_between_and_stats_defaults(tmp_path: Path) -> None:
    assert SinkStats.read(tmp_path / "missing.json") == SinkStats()
    before = SinkStats(10, 0, 10, 0, 10, 2, 1, {"receiver": 1.0, "pipeline": 2.0})
    after = SinkStats(110, 0, 105, 5, 110, 12, 5, {"receiver": 1.5, "pipeline": 2.25})
    side = side_between(before, after, cpu_s=0.8, settle_s=0.6)
    assert (side.received, side.stored, side.dropped, side.batches, side.commits) == (100, 95, 5, 10, 4)
    assert side.us_per_line() == pytest.approx(8000.0) and side.us_per_line(side.receiver_cpu_s) == pytest.approx(5000)


ACCESS_LINE = (
    "slipstream-access v=1 t=1796217808.111 svc=bench be=be_01 srv=s01 sp=41001 st=200 b=571 tw=0 tc=0 tr=1 "
    'ta=2 tt=2 fl=---- ci=127.0.0.1 m=GET p="/" q=""'
)


def test_access_sink_stores_what_haproxy_would_send(tmp_path: Path) -> None:
    """The real child: a receiver and a pipeline behind the datagram socket, as the daemon runs them."""
    sink = AccessSink(tmp_path / "sink")
    sink.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            for _ in range(3):
                s.sendto(ACCESS_LINE.encode(), str(sink.socket))
            s.sendto(b"not an access line", str(sink.socket))
        stats = sink.settled(quiet=0.3, timeout=20)
    finally:
        sink.stop()
    assert (stats.received, stats.unparsed, stats.stored, stats.observed) == (4, 1, 4, 3)
    assert stats.cpu("receiver") > 0 and stats.cpu("pipeline") > 0
