"""The bench's pure helpers: wrk output parsing, report keys, targets, rendered configs."""

from __future__ import annotations

import math

import pytest

from bench.daemon_bench import Timed, render_blueprint
from bench.docker_bench import DockerRuns
from bench.nginx import render_nginx_conf, render_upstream
from bench.profile import parse_collapsed
from bench.proxy_bench import FlipRun, LoadRun
from bench.report import Results, build_report, check_targets, median, overheads_ms, render_table
from bench.tools import parse_version
from bench.upstream import parse_head, render_response
from bench.wrk import build_wrk_argv, parse_time_ms, parse_wrk

WRK_OUT = """\
Running 10s test @ http://127.0.0.1:8080/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms  312.45us  10.01ms   90.12%
    Req/Sec    24.01k     1.20k   26.50k    70.00%
  Latency Distribution
     50%  980.00us
     75%    1.10ms
     90%    1.30ms
     99%    2.21ms
  478123 requests in 10.00s, 40.12MB read
  Socket errors: connect 0, read 12, write 1, timeout 0
  Non-2xx or 3xx responses: 5
Requests/sec:  47809.12
Transfer/sec:      4.01MB
LUA 2xx=478106 non2xx=17 bodyA=300000 bodyB=178123
"""


def test_parse_wrk_reads_every_number() -> None:
    r = parse_wrk(WRK_OUT)
    assert r.requests == 478123 and r.duration_s == pytest.approx(10.0)
    assert r.rps == pytest.approx(47809.12)
    assert r.percentiles_ms == {
        50: pytest.approx(0.98),
        75: pytest.approx(1.1),
        90: pytest.approx(1.3),
        99: pytest.approx(2.21),
    }
    assert r.socket_errors == {"connect": 0, "read": 12, "write": 1, "timeout": 0}
    assert r.non2xx_or_3xx == 5
    assert r.lua == {"2xx": 478106, "non2xx": 17, "bodyA": 300000, "bodyB": 178123}
    assert r.non2xx == 17  # the script's count wins over wrk's own line
    assert r.failed == 17 + 13


def test_parse_wrk_without_errors_or_script() -> None:
    text = "\n".join(line for line in WRK_OUT.splitlines() if not line.strip().startswith(("Socket", "Non-2xx", "LUA")))
    r = parse_wrk(text)
    assert r.errors == 0 and r.non2xx == 0 and r.failed == 0 and r.lua == {}


def test_parse_wrk_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="not a wrk summary"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


@pytest.mark.parametrize("value,unit,ms", [("312.45", "us", 0.31245), ("1.5", "ms", 1.5), ("2.00", "s", 2000.0)])
def test_parse_time_ms(value: str, unit: str, ms: float) -> None:
    assert parse_time_ms(value, unit) == pytest.approx(ms)


def test_wrk_argv_is_bounded_and_loopback_only() -> None:
    argv = build_wrk_argv("http://127.0.0.1:9/", threads=2, connections=50, seconds=10, host="a.localhost")
    assert argv[:5] == ["wrk", "-t2", "-c50", "-d10s", "--latency"] and "Host: a.localhost" in argv
    with pytest.raises(ValueError, match="loopback"):
        build_wrk_argv("http://10.0.0.1/", threads=1, connections=1, seconds=1)


def test_median() -> None:
    assert median([3, 1, 2]) == 2 and median([1, 2, 3, 4]) == 2.5 and math.isnan(median([]))


def _load(rps: float, p99: float, proxy_cpu: float = 0.0) -> LoadRun:
    text = WRK_OUT.replace("47809.12", str(rps)).replace("2.21ms", f"{p99}ms")
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("Socket", "Non-2xx", "LUA")))
    return LoadRun(parse_wrk(text), {"upstream_A": 50.0, "haproxy": proxy_cpu, "nginx": proxy_cpu}, 10)


def _results() -> Results:
    flip = parse_wrk(WRK_OUT)
    deploy = {"steps": {"build": 0.03, "start": 0.005, "health": 0.15, "flip": 0.003}}
    return Results(
        rounds=[
            {"direct": _load(1000, 2.0), "slipstream": _load(900, 3.0, 30.0), "nginx": _load(800, 4.0, 40.0)},
            {"direct": _load(2000, 4.0), "slipstream": _load(1600, 5.0, 30.0), "nginx": _load(1000, 6.0, 40.0)},
            {"direct": _load(1500, 3.0), "slipstream": _load(1350, 4.0, 30.0), "nginx": _load(900, 5.0, 40.0)},
        ],
        realistic=[
            {"direct": _load(1000, 2.0), "slipstream": _load(900, 2.5)},
            {"direct": _load(1000, 2.0), "slipstream": _load(800, 2.5)},
            {"direct": _load(1000, 2.0), "slipstream": _load(950, 2.5)},
        ],
        crash_after_check=[
            {"deploy_id": 12, "requests": 9000, "failed": 0, "status": "update_failed", "message": "x"},
            {"deploy_id": 13, "requests": 8000, "failed": 0, "status": "update_failed", "message": "y"},
        ],
        flips=(FlipRun("slipstream", 40, flip, [1.0]), FlipRun("nginx_reload", 40, flip, [5.0])),
        deploys=[Timed(200.0, deploy), Timed(260.0, deploy), Timed(220.0, deploy)],
        build_command_ms=[2.0, 4.0, 3.0],
        boot_ms=[100.0, 120.0, 110.0],
        rollbacks=[Timed(210.0, deploy)],
        restarts=[
            {"ms": 1300.0, "process_back_ms": 1200.0, "timeline": [(5, "s02-d7-1: was killed by SIGKILL")]},
            {"ms": 1400.0, "process_back_ms": 1300.0, "timeline": []},
            {"ms": 1200.0, "process_back_ms": 1100.0, "timeline": []},
        ],
        import_rss=[("interpreter", 13.0), ("fastapi", 18.0), ("psycopg", 9.0)],
        empty_rss_mb=75.0,
        idle={
            "services": 20,
            "instances": 20,
            "daemon": {"rss_mb": 85.04, "rss_mb_max": 85.1, "cpu_percent": 0.7, "threads": 6},
        },
        machine={"cores": 2},
        docker=_docker_runs(),
        crash_runs=[
            {
                "deploy_id": 9,
                "fail_s": 1.4,
                "cli_s": 2.5,
                "status": "update_failed",
                "message": "instance x exited",
                "timeline": [
                    (0, "deploy 9 queued"),
                    (200, "[bench-crash-d9-1] bench: exiting with 7 on purpose"),
                    (1250, "[bench-crash-d9-1] bench: exiting with 7 on purpose"),
                    (1400, "update_failed: instance x exited"),
                ],
            },
            {"deploy_id": 10, "fail_s": 1.2, "cli_s": 2.1, "status": "update_failed", "message": "instance y exited"},
            {"deploy_id": 11, "fail_s": 1.6, "cli_s": 2.9, "status": "update_failed", "message": "instance z exited"},
        ],
        tls_connect_ms={"disable": [4.0, 5.0, 6.0], "require": [8.0, 9.0, 10.0], "verify-full": [9.0, 10.0, 11.0]},
        cli={"services": 20, "samples_ms": {"script": [45.0, 120.0, 60.0], "module": [70.0, 55.0, 130.0]}},
    )


def _docker_runs() -> DockerRuns:
    """Three docker deploys: build 2 s, start 0.7 s, health 0.01 s, to traffic 4 s (median)."""
    steps = {"build": 2.0, "start": 0.7, "health": 0.01, "min_healthy": 1.0, "flip": 0.005, "total_to_live": 6.0}
    cold = {**steps, "build": 4.5}
    return DockerRuns(
        first=Timed(7000.0, {"steps": {**steps, "build": 5.0}}),
        cold=[Timed(6500.0, {"steps": cold}), Timed(6300.0, {"steps": {**cold, "build": 4.3}})],
        deploys=[Timed(4000.0, {"steps": steps}), Timed(4200.0, {"steps": steps}), Timed(3900.0, {"steps": steps})],
        restarts=[{"ms": 2300.0, "process_back_ms": 2200.0, "timeline": [(500, "bench-docker-d4-1: was killed")]}],
        build_phases=[[("COPY www/ /www/", 700.0), ('LABEL "io.slipstream.build"', 100.0)]],
    )


def test_report_has_exactly_the_issue_keys() -> None:
    report = build_report(_results())
    assert {k: set(v) for k, v in report.items() if k != "machine"} == {
        "proxy": {
            "direct_rps",
            "slipstream_rps",
            "nginx_rps",
            "ratio_vs_direct",
            "p99_ms_direct",
            "p99_ms_slipstream",
            "p99_ms_nginx",
            "rps_access_log_off",
            "rps_access_log_on",
            "access_log_cost_ratio",
            "access_log_daemon_cpu_us_per_request",
            "p99_ms_access_log_on",
            "access_log_lines_received_per_request",
            "cpu_us_per_request_slipstream",
            "cpu_us_per_request_nginx",
            "realistic_ratio_vs_direct",
            "realistic_direct_rps",
            "realistic_slipstream_rps",
            "realistic_p99_ms_direct",
            "realistic_p99_ms_slipstream",
        },
        "flips": {
            "count",
            "requests",
            "failed",
            "nginx_reload_failed",
            "crash_after_check_runs",
            "crash_after_check_requests",
            "crash_after_check_failed",
        },
        "deploy": {
            "runs",
            "total_ms_median",
            "overhead_ms_median",
            "build_ms_median",
            "start_ms_median",
            "health_ms_median",
            "flip_ms_median",
            "start_to_first_200_ms_median",
            "overhead_steps_ms_median",
            "crash_loop_runs",
            "crash_loop_fail_s_median",
            "crash_loop_fail_cli_s_median",
        },
        "rollback": {"ms_median"},
        "restart": {"ms_median"},
        "daemon": {"services", "rss_mb", "cpu_percent_idle"},
        "docker": {
            "runs",
            "cold_runs",
            "deploy_ms_median",
            "overhead_ms_median",
            "build_ms_median",
            "build_cold_ms_median",
            "start_ms_median",
            "health_ms_median",
            "min_healthy_ms_median",
            "flip_ms_median",
            "total_to_live_ms_median",
            "drain_ms_median",
            "start_to_first_200_ms_median",
            "restart_ms_median",
        },
        "postgres": {"connects_per_mode", "connect_ms_plain", "connect_ms_tls", "connect_ms_verify_full"},
        "logs": {"skipped"},  # measured: tests/bench_unit/test_bench_logs.py
        "metrics": {"skipped"},
        "cli": {"status_ms_median", "status_python_m_ms_median", "status_ms_min", "runs", "services"},
        "scale": {"skipped"},  # measured: test_scale_and_build_numbers_meet_their_targets_or_say_why
        "build": {"skipped"},
    }
    assert report["machine"] == {"cores": 2}


def test_report_numbers_are_medians_and_same_round_ratios() -> None:
    r = _results()
    report = build_report(r)
    assert report["proxy"]["direct_rps"] == 1500 and report["proxy"]["slipstream_rps"] == 1350
    assert report["proxy"]["ratio_vs_direct"] == 0.9  # median of 0.9, 0.8, 0.9
    assert report["proxy"]["p99_ms_slipstream"] == 4.0
    assert report["flips"] == {
        "count": 40,
        "requests": 478123,
        "failed": 30,
        "nginx_reload_failed": 30,
        "crash_after_check_runs": 2,
        "crash_after_check_requests": 17000,
        "crash_after_check_failed": 0,
    }
    # 30 % of a core over the run's duration, per request: the same-round runs' median
    assert report["proxy"]["realistic_ratio_vs_direct"] == 0.9  # median of 0.9, 0.8, 0.95
    cpu = report["proxy"]["cpu_us_per_request_slipstream"], report["proxy"]["cpu_us_per_request_nginx"]
    assert cpu[0] is not None and cpu[1] is not None and cpu[0] < cpu[1]
    assert overheads_ms(r) == [87.0, 147.0, 107.0]  # total - 3 ms build - 110 ms boot
    assert {k: report["deploy"][k] for k in ("runs", "total_ms_median", "overhead_ms_median")} == {
        "runs": 3,
        "total_ms_median": 220.0,
        "overhead_ms_median": 107.0,
    }
    assert report["deploy"]["build_ms_median"] == 30.0 and report["deploy"]["start_to_first_200_ms_median"] == 155.0
    assert report["deploy"]["overhead_steps_ms_median"] == 35.0  # 220 - 30 build - 5 start - 150 health
    assert report["restart"]["ms_median"] == 1300.0
    assert report["daemon"] == {"services": 20, "rss_mb": 85.0, "cpu_percent_idle": 0.7}


def test_crash_after_check_is_met_only_over_ten_deploys_without_a_failure() -> None:
    def target(runs: int, failed: int) -> tuple[bool, str]:
        r = _results()
        r.crash_after_check = [
            {
                "deploy_id": i,
                "requests": 1000,
                "failed": failed if i == 0 else 0,
                "status": "update_failed",
                "message": "",
            }
            for i in range(runs)
        ]
        t = next(t for t in check_targets(build_report(r)) if t.name == "crash after check")
        return t.met, t.measured

    assert target(10, 0) == (True, "0 failed over 10 deploys")
    assert target(10, 1) == (False, "1 failed over 10 deploys")
    assert target(9, 0) == (False, "0 failed over 9 deploys")


def test_targets_say_which_are_met() -> None:
    report = build_report(_results())
    met = {t.name: t.met for t in check_targets(report)}
    assert met == {
        "flips": False,
        "proxy CPU per request": True,
        "proxy throughput": True,  # 1350 >= nginx's 900 req/s
        "proxy, realistic upstream": True,
        "crash after check": False,  # 0 failed, but over 2 deploys: issue 15 asks for >= 10
        "proxy p99": True,
        "deploy overhead": True,
        "rollback": True,
        "restart": False,
        "daemon RSS": False,
        "daemon CPU idle": True,
        "docker deploy": False,
        "crash-looping release fails within 10 s": True,
        "log ingest": False,  # not measured here
        "grep over 1M stored lines": False,
        "100 MB of app logs: daemon RSS growth": False,
        "cli start-up": True,  # median of 45, 120, 60 ms
        "apply of 200 services (builds cached)": False,  # not measured here
        "daemon RSS with 200 services": False,
        "daemon CPU idle with 200 services": False,
        "flip with 200 services": False,
        "slipstream status with 200 services": False,
    }
    table = render_table(report, check_targets(report))
    assert "MISS  restart" in table and "MET   rollback" in table
    assert "MISS  docker deploy" in table and "MET   crash-looping release fails within 10 s" in table
    assert "60 ms  'slipstream status', spawn to exit, median of 3 (20 services); python -m 70 ms" in table
    r = _results()
    r.cli = None
    unmeasured = render_table(build_report(r), check_targets(build_report(r)))
    assert "MISS  cli start-up" in unmeasured and "cli status" in unmeasured


def test_nginx_config_keeps_upstream_connections_and_listens_on_loopback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = render_nginx_conf(tmp_path, 8081, tmp_path / "up.conf")
    assert "listen 127.0.0.1:8081;" in conf and "keepalive 64;" in conf
    assert 'proxy_set_header Connection "";' in conf and f"include {tmp_path / 'up.conf'};" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf and "X-Forwarded-Proto $scheme;" in conf
    assert render_upstream(9001) == "server 127.0.0.1:9001;\n"


def test_upstream_parses_heads_and_renders_responses() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nHost: x") == (0, False)
    assert parse_head(b"POST / HTTP/1.1\r\nContent-Length: 7\r\nConnection: close") == (7, True)
    assert parse_head(b"GET / HTTP/1.0\r\nHost: x") == (0, True)
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive") == (0, False)
    assert render_response(b"ok A", close=False).endswith(b"Content-Length: 4\r\nConnection: keep-alive\r\n\r\nok A")


def test_blueprint_is_valid_for_slipstream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from slipstream.blueprint import load_blueprint

    path = tmp_path / "render.yaml"
    path.write_text(render_blueprint(20))
    bp = load_blueprint(path)
    assert [s.name for s in bp.services] == [f"s{i:02d}" for i in range(1, 21)]


def test_parse_collapsed_counts_the_innermost_slipstream_frame() -> None:
    text = (
        "run (threading.py:1);_loop (slipstream/engine/monitor.py:43);check_http (slipstream/engine/health.py:24);"
        "getresponse (http/client.py:1) 3\n"
        "run (threading.py:1);select (selectors.py:468) 2\n"
    )
    assert parse_collapsed(text) == [
        ("check_http (slipstream/engine/health.py:24)", 3),
        ("select (selectors.py:468)", 2),
    ]


def test_parse_version() -> None:
    assert parse_version("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/") == "2.6.12-1+deb12u4"
    assert parse_version("nginx version: nginx/1.22.1") == "1.22.1"


def test_health_probe_schedule_matches_the_deployer() -> None:
    from bench.analysis import plan_health_probes

    assert [round(t, 1) for t in plan_health_probes(count=6)] == [0.0, 10.0, 25.0, 47.5, 81.2, 131.2]


def test_analysis_explains_each_missed_target() -> None:
    from bench.analysis import render_analysis

    r = _results()
    text = render_analysis(r, check_targets(build_report(r)))
    assert text.startswith("## Where targets are missed")
    assert "**Restart.** Median 1200 ms" in text and "+5 ms s02-d7-1: was killed by SIGKILL" in text
    assert "already takes 40 MB" in text and "psycopg serve features" in text
    assert "**Flips.**" in text and "**Proxy.**" not in text  # proxy targets were met


def test_proxy_analysis_splits_user_and_kernel_and_explains_p99() -> None:
    from bench.analysis import render_analysis

    r = _results()
    for row in r.rounds:  # HAProxy: 40 % of a core, 30 of it user space; nginx: 30 %, 10 user
        row["slipstream"].cpu.update(haproxy=40.0, haproxy_user=30.0)
        row["nginx"].cpu.update(nginx=30.0, nginx_user=10.0)
    text = render_analysis(r, check_targets(build_report(r)))
    assert "**Proxy.**" in text
    # the CPU per request splits 3:1 (HAProxy) and 1:2 (nginx), as the user shares above
    assert "Split: HAProxy 6.3 us user space + 2.1 us kernel per request, nginx 2.1 + 4.2 us" in text
    # mean latency = 50 / rps: direct p99 2.0, 4.0, 3.0 ms over means of 50, 25, 33 ms -> 0.1x (median)
    assert "p99 over the mean latency (mean = 50 connections / throughput): direct 0.1x" in text
    assert "p99 <= direct + 2 ms needs about" in text


def test_docs_page_renders_every_section() -> None:
    from bench.docs import render_markdown

    r = _results()
    report = build_report(r)
    page = render_markdown(r, report, check_targets(report), "## Where targets are missed: what dominates\n")
    for heading in (
        "## Targets (issues #6, #10, #12, 13, 15)",
        "## Machine",
        "## 1. Proxy overhead",
        "## 2. Flips under load",
        "## 3-4. Deploys and rollbacks",
        "## 5. Restarts after kill -9",
        "## 6. Idle daemon",
        "## 7. Docker beside native",
        "## 8. A crash-looping release fails fast",
        "## 9. PostgreSQL connect cost with TLS",
        "## Method",
        "## Where targets are missed",
    ):
        assert heading in page
    assert "| restart | <= 300 ms | 1300 ms | **missed** |" in page
    assert "| build step (a code change) | 30 ms | 2000 ms |" in page
    assert "| build step, cold (no cached layer) | - | 4400 ms |" in page
    assert "| start -> first 200 (start + health) | 155 ms | 710 ms |" in page
    assert "| kill -9 -> served via HAProxy | 1300 ms | 2300 ms |" in page
    assert "| COPY www/ /www/ | 700 |" in page
    assert "| 1 | 9 | 1.40 s | 2.50 s |" in page and "* +1400 ms: update_failed: instance x exited" in page
    assert "1050 ms between the two runs" in page and "the deploy ended 150 ms after" in page
    assert "| require | 3 | 9.00 ms | 9.80 ms | +4.00 ms |" in page


def test_docker_and_postgres_numbers_are_medians() -> None:
    report = build_report(_results())
    d = report["docker"]
    assert d["runs"] == 3 and d["cold_runs"] == 2
    assert d["deploy_ms_median"] == 4000.0 and d["build_ms_median"] == 2000.0 and d["build_cold_ms_median"] == 4400.0
    assert d["start_to_first_200_ms_median"] == 710.0 and d["restart_ms_median"] == 2300.0
    assert d["overhead_ms_median"] == 1290.0  # 4000 - 2000 build - 700 start - 10 health
    assert (
        report["deploy"]["crash_loop_fail_s_median"] == 1.4 and report["deploy"]["crash_loop_fail_cli_s_median"] == 2.5
    )
    assert report["postgres"] == {
        "connects_per_mode": 3,
        "connect_ms_plain": 5.0,
        "connect_ms_tls": 9.0,
        "connect_ms_verify_full": 10.0,
    }


def test_skipped_sections_are_named_not_faked() -> None:
    from bench.analysis import render_analysis
    from bench.docs import render_markdown

    r = _results()
    r.docker, r.crash_runs, r.tls_connect_ms = None, [], {}
    r.skipped = {"docker": "podman is not installed ('make install' installs it)", "crash_loop": "failed: boom"}
    report = build_report(r)
    assert report["docker"] == {"skipped": "podman is not installed ('make install' installs it)"}
    assert report["postgres"] == {"skipped": "not measured"} and report["skipped"] == r.skipped
    assert report["deploy"]["crash_loop_fail_s_median"] is None
    targets = {t.name: t for t in check_targets(report)}
    assert not targets["docker deploy"].met and targets["docker deploy"].measured.startswith("not measured: podman")
    assert targets["crash-looping release fails within 10 s"].measured == "not measured: failed: boom"
    table = render_table(report, list(targets.values()))
    docker_line = next(line for line in table.splitlines() if line.startswith("docker "))
    assert docker_line.split()[1:4] == ["skipped", "podman", "is"]
    assert "crash-loop fail" in table and "failed: boom" in table
    page = render_markdown(r, report, list(targets.values()), render_analysis(r, list(targets.values())))
    assert "No docker row in this run: podman is not installed" in page and "**Docker deploy.**" not in page


SCALE = {
    "services": 200,
    "instances": 200,
    "apply_s": 24.5,
    "apply_cold_s": 61.0,
    "daemon_rss_mb": 96.0,
    "daemon_cpu_percent_idle": 2.5,
    "daemon_threads": 14,
    "haproxy_rss_mb": 40.0,
    "haproxy_cpu_percent_idle": 0.2,
    "app_rss_mb_median": 11.0,
    "flip_ms_median": 3.2,
    "status_ms_median": 350.0,
}


def test_scale_and_build_numbers_meet_their_targets_or_say_why() -> None:
    from bench.docs import render_markdown

    r = _results()
    r.scale = dict(SCALE)
    r.build = {
        "default": "uv",
        "python_cold_s_pip": 2.4,
        "python_warm_s_pip": 2.0,
        "python_cold_s_uv": 0.8,
        "python_warm_s_uv": 0.5,
        "python_cold_s": 0.8,
        "python_warm_s": 0.5,
    }
    report = build_report(r)
    assert report["scale"] == SCALE and report["build"]["python_warm_s_uv"] == 0.5
    met = {t.name: (t.met, t.measured) for t in check_targets(report) if "200 services" in t.name}
    assert met == {
        "apply of 200 services (builds cached)": (True, "24.5 s"),
        "daemon RSS with 200 services": (True, "96 MB"),
        "daemon CPU idle with 200 services": (False, "2.5 %"),
        "flip with 200 services": (True, "3.2 ms"),
        "slipstream status with 200 services": (False, "350 ms"),
    }
    table = render_table(report, check_targets(report))
    assert "apply 24.5 s" in table and "pip 2.4 / 2 s, uv 0.8 / 0.5 s; default uv" in table
    assert "uv 0.8 / 0.5 s" in table.split("pip 2.4")[0]  # the default installer in the measured column
    page = render_markdown(r, report, check_targets(report))
    assert "| 200 (200 instances) | 24.5 s | 61 s | 96 MB (14 threads) | 2.5 % | 40 MB | 3.2 ms | 350 ms |" in page
    assert "| pip | 2.4 s | 2 s |" in page and "| uv (`pip install` through the shim) | 0.8 s | 0.5 s |" in page

    r.scale = {**SCALE, "services": 120, "apply_s": 10.0}  # what fitted: never counted as the target met
    targets = {t.name: t for t in check_targets(build_report(r))}
    assert not targets["apply of 200 services (builds cached)"].met
    assert targets["apply of 200 services (builds cached)"].measured == "10 s (120 services here)"
