"""Pure summaries of a bench run: the report (exactly the keys of issue #6), the targets, the table.

Numbers are medians of repeated runs; the proxy ratio is the median of per-round ratios, each
taken from runs side by side in one round (the machine is shared and noisy, so absolute req/s
drift between rounds while same-round ratios hold).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.daemon_bench import Timed
from bench.proxy_bench import FlipRun, LoadRun


@dataclass
class Results:
    """Everything one bench run measured (filled in by bench.run)."""

    rounds: list[dict[str, LoadRun]] = field(default_factory=list)
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


def build_report(r: Results) -> dict[str, Any]:
    """bench/report.json: exactly the keys named in issue #6, plus "machine"."""
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
        },
        "flips": {
            "count": slip.flips,
            "requests": slip.load.requests,
            "failed": slip.load.failed,
            "nginx_reload_failed": ngx.load.failed,
        },
        "deploy": {
            "runs": len(r.deploys),
            "total_ms_median": _r(median(t.ms for t in r.deploys)),
            "overhead_ms_median": _r(median(overheads_ms(r))),
        },
        "rollback": {"ms_median": _r(median(t.ms for t in r.rollbacks))},
        "restart": {"ms_median": _r(median(x["ms"] for x in r.restarts))},
        "daemon": {
            "services": r.idle.get("services", 0),
            "rss_mb": _r(r.idle.get("daemon", {}).get("rss_mb", float("nan"))),
            "cpu_percent_idle": _r(r.idle.get("daemon", {}).get("cpu_percent", float("nan")), 2),
        },
        "machine": r.machine,
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
        Target("proxy throughput", ">= 0.85x direct", f"{p['ratio_vs_direct']:.2f}x", p["ratio_vs_direct"] >= 0.85),
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
            "restart", "<= 500 ms", f"{report['restart']['ms_median']:.0f} ms", report["restart"]["ms_median"] <= 500
        ),
        Target(
            "daemon RSS",
            f"<= 80 MB with 20 services ({d['services']} here)",
            f"{d['rss_mb']:.1f} MB",
            d["rss_mb"] <= 80 and d["services"] >= 20,
        ),
        Target("daemon CPU idle", "<= 1 %", f"{d['cpu_percent_idle']:.2f} %", d["cpu_percent_idle"] <= 1),
    ]


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
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value:>14}  {note}" for name, value, note in rows]
    lines.append("")
    lines += [f"{'MET ' if t.met else 'MISS'}  {t.name:<17} {t.measured:>12}  (target {t.wanted})" for t in targets]
    return "\n".join(lines)
