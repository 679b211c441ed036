"""Pure summaries of a bench run: the report (the keys of issues #6, #10, #12 and 13), the targets, the table.

Numbers are medians of repeated runs; the proxy ratios (vs direct, access log on vs off) are
medians of per-round ratios, each taken from runs side by side in one round (the machine is shared
and noisy, so absolute req/s drift between rounds while same-round ratios hold).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import cli_bench
from bench.daemon_bench import Timed
from bench.docker_bench import DockerRuns
from bench.proxy_bench import ACCESS_LOG, FlipRun, LoadRun
from bench.tls_bench import REPORT_KEYS

INGEST_TARGET = 50_000  # lines/s
GREP_TARGET_MS = 200.0
# 10 % of the daemon's 80 MB budget: a burst of logs may cost a bounded working set (read buffers,
# one batch, SQLite's page cache), never memory in proportion to the volume; 100 MB is more than
# the whole budget, so a pipeline that buffered it would show tens of MB here.
LOG_RSS_GROWTH_MB = 8.0


@dataclass
class Results:
    """Everything one bench run measured (filled in by bench.run)."""

    rounds: list[dict[str, LoadRun]] = field(default_factory=list)
    realistic: list[dict[str, LoadRun]] = field(default_factory=list)  # issue 15: direct vs slipstream, upstream R
    flips: tuple[FlipRun, FlipRun] | None = None
    first_deploy: Timed | None = None
    deploys: list[Timed] = field(default_factory=list)
    build_command_ms: list[float] = field(default_factory=list)
    boot_ms: list[float] = field(default_factory=list)
    rollbacks: list[Timed] = field(default_factory=list)
    apply_s: float = 0.0
    restarts: list[dict[str, Any]] = field(default_factory=list)
    idle: dict[str, Any] = field(default_factory=dict)
    cli_ms: list[float] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)
    settle_s: float = 2.0
    elapsed_s: float = 0.0
    import_rss: list[tuple[str, float]] = field(default_factory=list)  # profile of the daemon's RSS floor
    daemon_py_spy: list[tuple[str, int]] | None = None  # idle CPU profile, when taken
    empty_rss_mb: float = float("nan")  # the daemon just started, no service
    docker: DockerRuns | None = None  # the docker row (issue #12)
    crash_runs: list[dict[str, Any]] = field(default_factory=list)  # fail-fast runs (issue #10)
    crash_after_check: list[dict[str, Any]] = field(default_factory=list)  # issue 15: deploys under load
    tls_connect_ms: dict[str, list[float]] = field(default_factory=dict)  # sslmode -> samples (issue #10)
    logs: dict[str, Any] | None = None  # bench.logs_bench.measure (issue 13)
    metrics: dict[str, Any] | None = None  # bench.metrics_bench.run (issue 13)
    cli: dict[str, Any] | None = None  # bench.cli_bench.measure (issue 15)
    scale: dict[str, Any] | None = None  # bench.scale_bench.run_scale (issue 15)
    build: dict[str, Any] | None = None  # bench.build_bench.measure (issue 15)
    skipped: dict[str, str] = field(default_factory=dict)  # section -> why it has no numbers


@dataclass(frozen=True)
class Target:
    """One acceptance target of issue #6 and whether this run met it."""

    name: str
    wanted: str
    measured: str
    met: bool


def median(values: Iterable[float]) -> float:
    """The median, or NaN for no values."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def overheads_ms(r: Results) -> list[float]:
    """Per deploy: time to traffic minus the buildCommand's and the app boot's median times."""
    fixed = median(r.build_command_ms) + median(r.boot_ms)
    return [t.ms - fixed for t in r.deploys]


def step_medians(runs: Sequence[Timed]) -> dict[str, float]:
    """Median seconds of each step the daemon recorded, over ``runs``."""
    names = dict.fromkeys(k for t in runs for k in t.deploy["steps"])
    return {k: median(t.deploy["steps"][k] for t in runs if k in t.deploy["steps"]) for k in names}


def _r(x: float, digits: int = 1) -> float:
    return round(x, digits)


def _n(x: float, digits: int = 1) -> float | None:
    """Rounded, or None (JSON null) where nothing was measured."""
    return None if x != x else round(x, digits)


def step_ms(runs: Sequence[Timed], step: str) -> float:
    """Median milliseconds of one recorded step over ``runs`` (NaN when none recorded it)."""
    return median(t.deploy["steps"][step] * 1000 for t in runs if step in t.deploy["steps"])


def start_to_first_200_ms(runs: Sequence[Timed]) -> float:
    """Median over ``runs`` of the start step plus the health step: the new instance's start until
    the daemon's first passing health probe on its port."""
    return median(
        (t.deploy["steps"]["start"] + t.deploy["steps"]["health"]) * 1000
        for t in runs
        if {"start", "health"} <= t.deploy["steps"].keys()
    )


def step_overheads_ms(runs: Sequence[Timed]) -> list[float]:
    """Per deploy: time to traffic minus the recorded build, start and health steps (for docker:
    the image build and the container's start -> first 200), the docker twin of :func:`overheads_ms`."""
    return [
        t.ms - sum(t.deploy["steps"].get(k, 0.0) for k in ("build", "start", "health")) * 1000
        for t in runs
        if "build" in t.deploy["steps"]
    ]


def _docker(r: Results) -> dict[str, Any]:
    if r.docker is None or not r.docker.deploys:
        return {"skipped": r.skipped.get("docker", "not measured")}
    d = r.docker
    return {
        "runs": len(d.deploys),
        "cold_runs": len(d.cold),
        "deploy_ms_median": _n(median(t.ms for t in d.deploys)),
        "overhead_ms_median": _n(median(step_overheads_ms(d.deploys))),
        "build_ms_median": _n(step_ms(d.deploys, "build")),
        "build_cold_ms_median": _n(step_ms(d.cold, "build")),
        "start_ms_median": _n(step_ms(d.deploys, "start")),
        "health_ms_median": _n(step_ms(d.deploys, "health")),
        "min_healthy_ms_median": _n(step_ms(d.deploys, "min_healthy")),
        "flip_ms_median": _n(step_ms(d.deploys, "flip")),
        "total_to_live_ms_median": _n(step_ms(d.deploys, "total_to_live")),
        "drain_ms_median": _n(step_ms(d.deploys, "drain")),
        "start_to_first_200_ms_median": _n(start_to_first_200_ms(d.deploys)),
        "restart_ms_median": _n(median(x["ms"] for x in d.restarts)),
    }


def _proxy_cpu(r: Results) -> dict[str, Any]:
    """Issue 15: the proxy process's CPU per request (same rounds, same upstream A) and the
    throughput ratio vs direct against the realistic upstream R (~100 us CPU per request)."""
    real = r.realistic
    return {
        "cpu_us_per_request_slipstream": _n(
            median(row["slipstream"].cpu_us_per_request("haproxy") for row in r.rounds)
        ),
        "cpu_us_per_request_nginx": _n(median(row["nginx"].cpu_us_per_request("nginx") for row in r.rounds)),
        "realistic_ratio_vs_direct": _n(
            median(row["slipstream"].result.rps / row["direct"].result.rps for row in real), 3
        )
        if real
        else None,
        "realistic_direct_rps": round(median(row["direct"].result.rps for row in real)) if real else None,
        "realistic_slipstream_rps": round(median(row["slipstream"].result.rps for row in real)) if real else None,
        "realistic_p99_ms_direct": _n(median(row["direct"].result.p99_ms for row in real), 2) if real else None,
        "realistic_p99_ms_slipstream": _n(median(row["slipstream"].result.p99_ms for row in real), 2) if real else None,
    }


def _crash_after_check(r: Results) -> dict[str, Any]:
    """Issue 15: requests failed while releases that die 0.3 s after their first check were deployed."""
    runs = r.crash_after_check
    return {
        "crash_after_check_runs": len(runs),
        "crash_after_check_requests": sum(x["requests"] for x in runs) if runs else None,
        "crash_after_check_failed": sum(x["failed"] for x in runs) if runs else None,
    }


def _postgres(r: Results) -> dict[str, Any]:
    if not r.tls_connect_ms:
        return {"skipped": r.skipped.get("postgres", "not measured")}
    out: dict[str, Any] = {"connects_per_mode": min(len(v) for v in r.tls_connect_ms.values())}
    out.update({key: _n(median(r.tls_connect_ms.get(mode, [])), 2) for mode, key in REPORT_KEYS.items()})
    return out


ACCESS_LOG_KEYS = (
    "rps_access_log_off",
    "rps_access_log_on",
    "access_log_cost_ratio",
    "access_log_daemon_cpu_us_per_request",
    "p99_ms_access_log_on",
    "access_log_lines_received_per_request",
)


def _access_log(rounds: Sequence[dict[str, LoadRun]]) -> dict[str, Any]:
    """Issue 13: the proxy's throughput with HAProxy's access log off (the ``slipstream`` runs) and
    on (the same HAProxy with its lines read and stored by the daemon's side), same rounds."""
    on = [row for row in rounds if ACCESS_LOG in row and row[ACCESS_LOG].access is not None]
    if not on:
        return dict.fromkeys(ACCESS_LOG_KEYS)

    def side(row: dict[str, LoadRun]) -> Any:
        return row[ACCESS_LOG].access

    return {
        "rps_access_log_off": round(median(row["slipstream"].result.rps for row in on)),
        "rps_access_log_on": round(median(row[ACCESS_LOG].result.rps for row in on)),
        "access_log_cost_ratio": _r(median(row[ACCESS_LOG].result.rps / row["slipstream"].result.rps for row in on), 3),
        "access_log_daemon_cpu_us_per_request": _r(median(side(row).us_per_line() for row in on)),
        "p99_ms_access_log_on": _r(median(row[ACCESS_LOG].result.p99_ms for row in on), 2),
        "access_log_lines_received_per_request": _r(
            median(side(row).received / max(1, row[ACCESS_LOG].result.requests) for row in on), 3
        ),
    }


def _logs(r: Results) -> dict[str, Any]:
    """Issue 13: ingest, --grep over the stored lines, the RSS while an app writes its logs."""
    if not r.logs:
        return {"skipped": r.skipped.get("logs", "not measured")}
    i, p, rss = r.logs["ingest"], r.logs["paced"], r.logs["rss"]
    targeted = [g for g in r.logs["grep"] if g["targeted"]]
    return {
        "lines": r.logs["lines"],
        "ingest_lines_per_s": round(i["lines_per_s"]),
        "ingest_lines_per_cpu_s": round(i["lines_per_cpu_s"]),
        "ingest_cpu_s": _r(i["cpu_s"], 2),
        "stored_bytes_per_line": _r(i["bytes_per_line"]),
        "paced_lines_per_s": p["rate"],
        "paced_cpu_percent": _r(p["cpu_percent_of_one_core"]),
        "paced_lines_behind": p["lines_behind_when_writer_stopped"],
        "grep_cold_ms_max": _r(max(g["cold_ms_median"] for g in targeted)),
        "grep_warm_ms_max": _r(max(g["warm_ms_median"] for g in targeted)),
        "grep": [
            {
                "query": g["query"],
                "kind": g["kind"],
                "targeted": g["targeted"],
                "found": g["found"],
                "cold_ms_median": _r(g["cold_ms_median"]),
                "warm_ms_median": _r(g["warm_ms_median"]),
            }
            for g in r.logs["grep"]
        ],
        "app_log_mb": _r(rss["written_mb"]),
        "rss_baseline_mb": _r(rss["baseline_rss_mb"]),
        "rss_peak_mb": _r(rss["peak_rss_mb"]),
        "rss_growth_mb": _r(rss["growth_mb"]),
    }


METRICS_KEYS = (
    "services",
    "hours",
    "round_ms_median",
    "round_ms_p95",
    "round_ms_without_fake_sources_median",
    "observe_us_per_request",
    "store_mb",
    "store_mb_24h_projected",
    "query_1h_ms",
)


def _metrics(r: Results) -> dict[str, Any]:
    """Issue 13: one collection round with 200 services, the store's size for 24 h, --since 1h."""
    if not r.metrics:
        return {"skipped": r.skipped.get("metrics", "not measured")}
    return {key: r.metrics[key] for key in METRICS_KEYS}


def build_report(r: Results) -> dict[str, Any]:
    """bench/report.json: the keys named in issues #6, #10, #12 and 13, plus "machine" (and "skipped",
    naming each section without numbers and why, when there is one)."""
    med = {
        name: {
            "rps": median(row[name].result.rps for row in r.rounds),
            "p99": median(row[name].result.p99_ms for row in r.rounds),
        }
        for name in ("direct", "slipstream", "nginx")
    }
    ratio = median(row["slipstream"].result.rps / row["direct"].result.rps for row in r.rounds)
    assert r.flips is not None
    slip, ngx = r.flips
    return {
        "proxy": {
            "direct_rps": round(med["direct"]["rps"]),
            "slipstream_rps": round(med["slipstream"]["rps"]),
            "nginx_rps": round(med["nginx"]["rps"]),
            "ratio_vs_direct": _r(ratio, 3),
            "p99_ms_direct": _r(med["direct"]["p99"], 2),
            "p99_ms_slipstream": _r(med["slipstream"]["p99"], 2),
            "p99_ms_nginx": _r(med["nginx"]["p99"], 2),
            **_access_log(r.rounds),
            **_proxy_cpu(r),
        },
        "flips": {
            "count": slip.flips,
            "requests": slip.load.requests,
            "failed": slip.load.failed,
            "nginx_reload_failed": ngx.load.failed,
            **_crash_after_check(r),
        },
        "deploy": {
            "runs": len(r.deploys),
            "total_ms_median": _r(median(t.ms for t in r.deploys)),
            "overhead_ms_median": _r(median(overheads_ms(r))),
            "build_ms_median": _n(step_ms(r.deploys, "build")),
            "start_ms_median": _n(step_ms(r.deploys, "start")),
            "health_ms_median": _n(step_ms(r.deploys, "health")),
            "flip_ms_median": _n(step_ms(r.deploys, "flip")),
            "start_to_first_200_ms_median": _n(start_to_first_200_ms(r.deploys)),
            "overhead_steps_ms_median": _n(median(step_overheads_ms(r.deploys))),  # docker's overhead, counted alike
            "crash_loop_runs": len(r.crash_runs),
            "crash_loop_fail_s_median": _n(median(x["fail_s"] for x in r.crash_runs), 2),
            "crash_loop_fail_cli_s_median": _n(median(x["cli_s"] for x in r.crash_runs), 2),
        },
        "rollback": {"ms_median": _r(median(t.ms for t in r.rollbacks))},
        "restart": {"ms_median": _r(median(x["ms"] for x in r.restarts))},
        "daemon": {
            "services": r.idle.get("services", 0),
            "rss_mb": _r(r.idle.get("daemon", {}).get("rss_mb", float("nan"))),
            "cpu_percent_idle": _r(r.idle.get("daemon", {}).get("cpu_percent", float("nan")), 2),
        },
        "docker": _docker(r),
        "postgres": _postgres(r),
        "logs": _logs(r),
        "metrics": _metrics(r),
        "cli": cli_bench.summary(r.cli),
        "scale": r.scale or {"skipped": r.skipped.get("scale", "not measured")},
        "build": r.build or {"skipped": r.skipped.get("build", "not measured")},
        "machine": r.machine,
        **({"skipped": dict(r.skipped)} if r.skipped else {}),
    }


def check_targets(report: dict[str, Any]) -> list[Target]:
    """The acceptance targets of issue #6 against ``report``."""
    p, f, d = report["proxy"], report["flips"], report["daemon"]
    p99_limit = p["p99_ms_direct"] + 2
    return [
        Target(
            "flips",
            "0 failed requests over >= 40 flips",
            f"{f['failed']} failed over {f['count']} flips",
            f["failed"] == 0 and f["count"] >= 40,
        ),
        *_proxy_targets(p),
        _crash_after_check_target(f),
        Target(
            "proxy p99",
            f"<= direct + 2 ms ({p99_limit:.2f} ms)",
            f"{p['p99_ms_slipstream']:.2f} ms",
            p["p99_ms_slipstream"] <= p99_limit,
        ),
        Target(
            "deploy overhead",
            "<= 150 ms",
            f"{report['deploy']['overhead_ms_median']:.0f} ms",
            report["deploy"]["overhead_ms_median"] <= 150,
        ),
        Target(
            "rollback", "<= 500 ms", f"{report['rollback']['ms_median']:.0f} ms", report["rollback"]["ms_median"] <= 500
        ),
        Target(
            "restart", "<= 300 ms", f"{report['restart']['ms_median']:.0f} ms", report["restart"]["ms_median"] <= 300
        ),
        Target(
            "daemon RSS",
            f"<= 80 MB with 20 services ({d['services']} here)",
            f"{d['rss_mb']:.1f} MB",
            d["rss_mb"] <= 80 and d["services"] >= 20,
        ),
        Target("daemon CPU idle", "<= 1 %", f"{d['cpu_percent_idle']:.2f} %", d["cpu_percent_idle"] <= 1),
        _docker_target(report),
        _crash_loop_target(report),
        *_logs_targets(report),
        Target(*cli_bench.target(report)),
        *_scale_targets(report),
    ]


def _proxy_targets(p: dict[str, Any]) -> list[Target]:
    """Issue 15: the proxy costs no more CPU per request than nginx and serves at least as much,
    and next to an app doing ~100 us of work a request it keeps >= 0.85x of direct."""
    cpu, ngx_cpu, real = (
        p["cpu_us_per_request_slipstream"],
        p["cpu_us_per_request_nginx"],
        p["realistic_ratio_vs_direct"],
    )
    return [
        Target(
            "proxy CPU per request",
            f"<= nginx ({ngx_cpu} us)",
            f"{cpu} us",
            cpu is not None and ngx_cpu is not None and cpu <= ngx_cpu,
        ),
        Target(
            "proxy throughput",
            f">= nginx ({p['nginx_rps']:,} req/s)",
            f"{p['slipstream_rps']:,} req/s ({p['ratio_vs_direct']:.2f}x direct)",
            p["slipstream_rps"] >= p["nginx_rps"],
        ),
        Target(
            "proxy, realistic upstream",
            ">= 0.85x direct (~100 us CPU a request)",
            "not measured" if real is None else f"{real:.2f}x",
            real is not None and real >= 0.85,
        ),
    ]


# issue 15 counts the failed requests over at least this many deploys; fewer is not a measurement of it
CRASH_AFTER_CHECK_MIN_RUNS = 10


def _crash_after_check_target(f: dict[str, Any]) -> Target:
    """Issue 15: a release dying 0.3 s after its first good check costs no request."""
    failed, runs = f.get("crash_after_check_failed"), f.get("crash_after_check_runs", 0)
    return Target(
        "crash after check",
        f"0 failed requests over >= {CRASH_AFTER_CHECK_MIN_RUNS} deploys (release exits 0.3 s after its first check)",
        "not measured" if failed is None else f"{failed} failed over {runs} deploys",
        failed == 0 and runs >= CRASH_AFTER_CHECK_MIN_RUNS,
    )


# Issue 15, target 5: one daemon with 200 web services.
SCALE_TARGETS = (
    ("apply_s", "apply of 200 services (builds cached)", 30.0, "s"),
    ("daemon_rss_mb", "daemon RSS with 200 services", 100.0, "MB"),
    ("daemon_cpu_percent_idle", "daemon CPU idle with 200 services", 1.0, "%"),
    ("flip_ms_median", "flip with 200 services", 5.0, "ms"),
    ("status_ms_median", "slipstream status with 200 services", 300.0, "ms"),
)


def _scale_targets(report: dict[str, Any]) -> list[Target]:
    x = report["scale"]
    out = []
    for key, name, limit, unit in SCALE_TARGETS:
        wanted = f"<= {limit:g} {unit}"
        if "skipped" in x:
            out.append(Target(name, wanted, f"not measured: {x['skipped']}", False))
            continue
        here = "" if x["services"] >= 200 else f" ({x['services']} services here)"
        out.append(Target(name, wanted, f"{x[key]:g} {unit}{here}", x[key] <= limit and x["services"] >= 200))
    return out


def _logs_targets(report: dict[str, Any]) -> list[Target]:
    """Issue 13: ingest rate (with the daemon's CPU stated), --grep time, RSS under a burst of logs."""
    x = report["logs"]
    names = ("log ingest", "grep over 1M stored lines", "100 MB of app logs: daemon RSS growth")
    wanted = (
        f">= {INGEST_TARGET:,} lines/s",
        f"<= {GREP_TARGET_MS:.0f} ms, cold, slowest query",
        f"<= {LOG_RSS_GROWTH_MB:.0f} MB (10 % of the 80 MB daemon budget)",
    )
    if "skipped" in x:
        return [Target(n, w, f"not measured: {x['skipped']}", False) for n, w in zip(names, wanted, strict=True)]
    lines = "" if x["lines"] == 1_000_000 else f" ({x['lines']:,} lines here)"
    mb = "" if x["app_log_mb"] >= 99.5 else f" ({x['app_log_mb']:.0f} MB here)"
    return [
        Target(
            names[0],
            wanted[0],
            f"{x['ingest_lines_per_s']:,} lines/s ({x['ingest_lines_per_cpu_s']:,} per CPU-s; "
            f"{x['paced_cpu_percent']:.0f} % of a core at {x['paced_lines_per_s']:,}/s)",
            x["ingest_lines_per_s"] >= INGEST_TARGET,
        ),
        Target(names[1], wanted[1], f"{x['grep_cold_ms_max']:.0f} ms{lines}", x["grep_cold_ms_max"] <= GREP_TARGET_MS),
        Target(
            names[2],
            wanted[2],
            f"+{x['rss_growth_mb']:.1f} MB{mb}",
            x["rss_growth_mb"] <= LOG_RSS_GROWTH_MB and x["app_log_mb"] >= 99.5,
        ),
    ]


def _docker_target(report: dict[str, Any]) -> Target:
    """Docker deploys carry no more platform time than native ones: the native overhead target,
    with the image build and the container's start -> first 200 as the app's own parts."""
    wanted = "overhead <= 150 ms, as native"
    overhead = report["docker"].get("overhead_ms_median")
    if overhead is None:
        return Target("docker deploy", wanted, f"not measured: {report['docker'].get('skipped')}", False)
    return Target("docker deploy", wanted, f"{overhead:.0f} ms", overhead <= 150)


def _crash_loop_target(report: dict[str, Any]) -> Target:
    """Issue #10: a release that exits at once ends ``update_failed`` in seconds, not minutes."""
    name, wanted = "crash-looping release fails within 10 s", "<= 10 s, created -> update_failed"
    fail_s = report["deploy"].get("crash_loop_fail_s_median")
    if fail_s is None:
        why = report.get("skipped", {}).get("crash_loop", "not measured")
        return Target(name, wanted, f"not measured: {why}", False)
    return Target(name, wanted, f"{fail_s:.2f} s", fail_s <= 10)


def render_table(report: dict[str, Any], targets: Sequence[Target]) -> str:
    """The table `make bench` prints: one line per measured number, then the targets."""
    p, f = report["proxy"], report["flips"]
    rows = [
        ("proxy direct", f"{p['direct_rps']:,} req/s", f"p99 {p['p99_ms_direct']:.2f} ms"),
        (
            "proxy slipstream",
            f"{p['slipstream_rps']:,} req/s",
            f"p99 {p['p99_ms_slipstream']:.2f} ms, {p['ratio_vs_direct']:.2f}x direct",
        ),
        ("proxy nginx", f"{p['nginx_rps']:,} req/s", f"p99 {p['p99_ms_nginx']:.2f} ms"),
        ("flips slipstream", f"{f['failed']} failed", f"{f['count']} flips, {f['requests']:,} requests"),
        ("flips nginx reload", f"{f['nginx_reload_failed']} failed", "same load and pacing"),
        (
            "deploy",
            f"{report['deploy']['total_ms_median']:.0f} ms",
            f"overhead {report['deploy']['overhead_ms_median']:.0f} ms, {report['deploy']['runs']} runs",
        ),
        ("rollback", f"{report['rollback']['ms_median']:.0f} ms", "command -> earlier build serving"),
        ("restart", f"{report['restart']['ms_median']:.0f} ms", "kill -9 -> serving again"),
        (
            "daemon idle",
            f"{report['daemon']['rss_mb']:.1f} MB",
            f"{report['daemon']['cpu_percent_idle']:.2f} % CPU, {report['daemon']['services']} services",
        ),
    ]
    rows += _docker_rows(report) + _failfast_rows(report) + _issue13_rows(report)
    rows.append(cli_bench.row(report))
    rows += _issue15_rows(report)
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value:>14}  {note}" for name, value, note in rows]
    lines.append("")
    tw = max(len(t.name) for t in targets)
    lines += [f"{'MET ' if t.met else 'MISS'}  {t.name:<{tw}} {t.measured:>12}  (target {t.wanted})" for t in targets]
    return "\n".join(lines)


def _issue15_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """200 services on one daemon, and pip against uv for a Python build (issue 15)."""
    x, b = report["scale"], report["build"]
    rows = []
    if "skipped" in x:
        rows.append(("scale", "skipped", x["skipped"]))
    else:
        rows.append(
            (
                f"{x['services']} services",
                f"apply {x['apply_s']:g} s",
                f"cold {x['apply_cold_s']:g} s; daemon {x['daemon_rss_mb']:g} MB, "
                f"{x['daemon_cpu_percent_idle']:g} % CPU; HAProxy {x['haproxy_rss_mb']:g} MB; flip "
                f"{x['flip_ms_median']:g} ms; status {x['status_ms_median']:.0f} ms",
            )
        )
    if "skipped" in b:
        rows.append(("python build", "skipped", b["skipped"]))
    else:
        uv = (
            f"uv {b['python_cold_s_uv']:g} / {b['python_warm_s_uv']:g} s"
            if "python_cold_s_uv" in b
            else f"uv not measured: {b.get('uv_skipped')}"
        )
        rows.append(
            (
                "python build",
                f"{b['default']} {b['python_cold_s']:g} / {b['python_warm_s']:g} s",
                f"cold / warm: pip {b['python_cold_s_pip']:g} / {b['python_warm_s_pip']:g} s, {uv}; "
                f"default {b['default']}",
            )
        )
    return rows


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} ms"


def _docker_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The docker row beside the native numbers (issue #12)."""
    d, n = report["docker"], report["deploy"]
    if "skipped" in d:
        return [("docker", "skipped", d["skipped"])]
    return [
        (
            "docker deploy",
            _ms(d["deploy_ms_median"]),
            f"overhead {_ms(d['overhead_ms_median'])}, {d['runs']} runs; native {_ms(n['total_ms_median'])}, "
            f"overhead counted alike {_ms(n['overhead_steps_ms_median'])}",
        ),
        (
            "docker build",
            _ms(d["build_ms_median"]),
            f"code change, cached layers; cold {_ms(d['build_cold_ms_median'])} ({d['cold_runs']} runs); "
            f"native build step {_ms(n['build_ms_median'])}",
        ),
        (
            "docker start->200",
            _ms(d["start_to_first_200_ms_median"]),
            f"start {_ms(d['start_ms_median'])} + health {_ms(d['health_ms_median'])}; "
            f"native {_ms(n['start_to_first_200_ms_median'])}",
        ),
        ("docker flip", _ms(d["flip_ms_median"]), f"native {_ms(n['flip_ms_median'])}"),
        (
            "docker restart",
            _ms(d["restart_ms_median"]),
            f"kill -9 -> serving via HAProxy; native {_ms(report['restart']['ms_median'])}",
        ),
    ]


def _failfast_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Fail-fast time and the TLS connect costs (issue #10)."""
    n, p = report["deploy"], report["postgres"]
    rows = []
    if n["crash_loop_fail_s_median"] is None:
        rows.append(("crash-loop fail", "skipped", report.get("skipped", {}).get("crash_loop", "not measured")))
    else:
        rows.append(
            (
                "crash-loop fail",
                f"{n['crash_loop_fail_s_median']:.2f} s",
                f"created -> update_failed, {n['crash_loop_runs']} runs; "
                f"'slipstream deploy' {n['crash_loop_fail_cli_s_median']:.2f} s",
            )
        )
    if "skipped" in p:
        rows.append(("postgres connect", "skipped", p["skipped"]))
    else:
        rows.append(
            (
                "postgres connect",
                f"{p['connect_ms_plain']:.1f} ms",
                f"sslmode=disable; require {p['connect_ms_tls']:.1f} ms, verify-full "
                f"{p['connect_ms_verify_full']:.1f} ms ({p['connects_per_mode']} each, interleaved)",
            )
        )
    return rows


def _issue13_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The access log's cost beside the proxy, the logs and the metrics (issue 13)."""
    p, x, m = report["proxy"], report["logs"], report["metrics"]
    rows = []
    if p["rps_access_log_on"] is None:
        rows.append(("proxy + access log", "skipped", "no access-log-on run"))
    else:
        rows.append(
            (
                "proxy + access log",
                f"{p['rps_access_log_on']:,} req/s",
                f"p99 {p['p99_ms_access_log_on']:.2f} ms, {p['access_log_cost_ratio']:.2f}x off "
                f"({p['rps_access_log_off']:,} req/s); daemon side {p['access_log_daemon_cpu_us_per_request']:.0f} us "
                f"CPU per line, {p['access_log_lines_received_per_request']:.0%} of lines received",
            )
        )
    if "skipped" in x:
        rows.append(("logs", "skipped", x["skipped"]))
    else:
        scan = [g for g in x["grep"] if not g["targeted"]]
        rows += [
            (
                "log ingest",
                f"{x['ingest_lines_per_s']:,} lines/s",
                f"{x['ingest_lines_per_cpu_s']:,} per CPU-second; {x['paced_cpu_percent']:.0f} % of one core "
                f"at {x['paced_lines_per_s']:,} lines/s",
            ),
            (
                "log grep",
                f"{x['grep_cold_ms_max']:.0f} ms",
                f"cold, slowest of {len(x['grep']) - len(scan)} queries over {x['lines']:,} lines; warm "
                f"{x['grep_warm_ms_max']:.0f} ms" + "".join(f"; full scan {g['cold_ms_median']:.0f} ms" for g in scan),
            ),
            (
                "log RSS",
                f"+{x['rss_growth_mb']:.1f} MB",
                f"{x['rss_baseline_mb']:.1f} -> {x['rss_peak_mb']:.1f} MB while an app wrote {x['app_log_mb']:.0f} MB",
            ),
        ]
    if "skipped" in m:
        rows.append(("metrics", "skipped", m["skipped"]))
    else:
        projected = m["store_mb_24h_projected"]
        rows.append(
            (
                "metrics round",
                f"{m['round_ms_median']:.0f} ms",
                f"{m['services']} services; store {m['store_mb']:.1f} MB after {m['hours']:g} h"
                + (
                    f", 24 h {projected:.0f} MB" + (" (projected)" if m["hours"] < 24 else "")
                    if projected is not None
                    else ""
                )
                + f"; --since 1h {m['query_1h_ms']:.1f} ms",
            )
        )
    return rows
