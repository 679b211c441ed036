"""What ``slipstream metrics NAME [--since 1h] [--json]`` shows: one report per name (pure).

``build_report`` turns a :class:`~slipstream.metrics.store.QueryResult` into one JSON-able object
(the API returns it as is; ``--json`` prints it): traffic over the window (``requests_per_s``,
``status`` counts by class, ``error_rate``, ``latency_ms`` p50/p95/p99), the instances alive at
the end of the window, the latest database / key value / cron figures when the name is one of
those, and every series with its sparkline. ``render_text`` prints that object for a person.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from slipstream.errors import InvalidInput, NotFound
from slipstream.metrics.histogram import Histogram
from slipstream.metrics.model import Series
from slipstream.metrics.parse import parse_duration
from slipstream.metrics.sparkline import render_sparkline
from slipstream.metrics.store import ROLLUP_RETENTION_S, MetricsStore, QueryResult

SPARK_WIDTH = 40


def _sum(series: Series | None) -> float:
    return math.fsum(v for _, v in series.points if v is not None) if series else 0.0


def _last(series: Series | None) -> float | None:
    if series is None:
        return None
    return next((v for _, v in reversed(series.points) if v is not None), None)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _index(series: Iterable[Series]) -> dict[tuple[str, str, str], Series]:
    return {(s.kind, s.entity, s.metric): s for s in series}


def window_latency(
    owner: str, by_key: Mapping[tuple[str, str, str], Series], histograms: Mapping[str, Histogram]
) -> dict[str, Any]:
    """p50/p95/p99 over the window: from the merged minute histograms when kept (exact within 2 %),
    else the request-weighted mean of the stored percentiles, else HAProxy's average only."""
    h = histograms.get(owner)
    if h is not None and h.count:
        return {
            "p50": _round(h.quantile(0.5)),
            "p95": _round(h.quantile(0.95)),
            "p99": _round(h.quantile(0.99)),
            "source": "access_log",
        }
    samples = by_key.get(("latency", owner, "samples"))
    if samples is not None and _sum(samples) > 0:
        out: dict[str, Any] = {"source": "access_log_approximate"}
        weights = [w or 0.0 for _, w in samples.points]
        for q in ("p50", "p95", "p99"):
            points = by_key[("latency", owner, f"latency_{q}_ms")].points
            pairs = [(w, v) for w, (_, v) in zip(weights, points, strict=False) if v is not None and w > 0]
            total = math.fsum(w for w, _ in pairs)
            out[q] = _round(math.fsum(w * v for w, v in pairs) / total) if total else None
        return out
    avg = by_key.get(("http", owner, "total_avg_ms"))
    present = [v for _, v in avg.points if v is not None] if avg else []
    return {
        "p50": None,
        "p95": None,
        "p99": None,
        "avg": _round(math.fsum(present) / len(present)) if present else None,
        "source": "proxy_average" if present else None,
    }


def _instances(series: Sequence[Series], resolution: int) -> list[dict[str, Any]]:
    """The instances with figures at the end of the window (the ones alive then), by id."""
    by_entity: dict[str, dict[str, Series]] = {}
    for s in series:
        if s.kind == "instance":
            by_entity.setdefault(s.entity, {})[s.metric] = s
    if not by_entity:
        return []
    ends = {e: max(ts for ts, _ in m["rss_mb"].points) for e, m in by_entity.items() if m["rss_mb"].points}
    latest = max(ends.values(), default=0)
    out = []
    for entity in sorted(by_entity):
        if ends.get(entity, 0) < latest - 2 * resolution:
            continue
        m = by_entity[entity]
        restarts = _last(m["restarts"])
        out.append(
            {
                "id": entity,
                "rss_mb": _round(_last(m["rss_mb"]), 1),
                "cpu_percent": _round(_last(m["cpu_percent"]), 1),
                "memory_limit_mb": _round(_last(m["memory_limit_mb"]), 1),
                "restarts": None if restarts is None else int(restarts),
            }
        )
    return out


def _latest_of(kind: str, series: Sequence[Series]) -> dict[str, Any] | None:
    chosen = [s for s in series if s.kind == kind]
    if not chosen:
        return None
    return {s.metric: _round(_last(s)) for s in chosen}


def _cron(series: Sequence[Series]) -> dict[str, Any] | None:
    """Runs, failures and the last run's end, duration and exit code within the window."""
    by_metric = {s.metric: s for s in series if s.kind == "cron"}
    if not by_metric:
        return None
    finished = [ts for ts, v in by_metric["runs"].points if v]
    code = _last(by_metric["exit_code"])
    return {
        "runs": int(_sum(by_metric["runs"])),
        "failures": int(_sum(by_metric["failures"])),
        "last_run_at": max(finished) if finished else None,
        "last_duration_s": _round(_last(by_metric["duration_s"])),
        "last_exit_code": None if code is None else int(code),
    }


def _derived(by_key: Mapping[tuple[str, str, str], Series], owner: str, resolution: int) -> list[Series]:
    """Series computed from stored ones: requests per second and the share of 5xx."""
    requests = by_key.get(("http", owner, "requests"))
    errors = by_key.get(("http", owner, "http_5xx"))
    if requests is None or errors is None:
        return []
    rate = tuple((ts, None if v is None else v / resolution) for ts, v in requests.points)
    share = tuple(
        (ts, None if not r else (e or 0.0) / r) for (ts, r), (_, e) in zip(requests.points, errors.points, strict=False)
    )
    return [
        Series("http", owner, "requests_per_s", "req/s", rate),
        Series("http", owner, "error_rate", "ratio", share),
    ]


def build_report(result: QueryResult) -> dict[str, Any]:
    """The report of one name over a window (see the module docstring)."""
    owner, res = result.owner, result.resolution
    by_key = _index(result.series)
    requests = by_key.get(("http", owner, "requests"))
    covered = len([1 for _, v in requests.points if v is not None]) * res if requests else 0
    total = _sum(requests)
    status = {cls: int(_sum(by_key.get(("http", owner, f"http_{cls}")))) for cls in ("2xx", "3xx", "4xx", "5xx")}
    shown = _derived(by_key, owner, res) + [s for s in result.series if s.kind != "http" or s.metric != "requests"]
    report: dict[str, Any] = {
        "service": owner,
        "since": result.since,
        "until": result.until,
        "resolution_s": res,
        "requests_per_s": _round(total / covered) if covered else (0.0 if requests else None),
        "requests": int(total),
        "status": status,
        "error_rate": _round(status["5xx"] / total, 4) if total else None,
        "latency_ms": window_latency(owner, by_key, result.histograms),
        "instances": _instances(result.series, res),
        "series": [
            {
                "name": s.metric,
                "kind": s.kind,
                "entity": s.entity,
                "unit": s.unit,
                "points": [[ts, _round(v)] for ts, v in s.points],
                "spark": render_sparkline([v for _, v in s.points], SPARK_WIDTH),
            }
            for s in shown
        ],
    }
    for kind in ("database", "keyvalue"):
        latest = _latest_of(kind, result.series)
        if latest is not None:
            report[kind] = latest
    cron = _cron(result.series)
    if cron is not None:
        report["cron"] = cron
    return report


def query_report(store: MetricsStore, name: str, since: str | float = "1h", now: float | None = None) -> dict[str, Any]:
    """The report of ``name`` over the last ``since`` (``15m``, ``1h``, ``7d``; at most 14 days).

    Raises :class:`NotFound` when nothing was ever recorded for ``name`` (the API's 404).
    """
    seconds = parse_duration(since, "--since")
    if not 0 < seconds <= ROLLUP_RETENTION_S:
        raise InvalidInput(f"--since {since} is not between 1 s and 14 days", "metrics are kept 14 days")
    if name not in store.owners():
        raise NotFound(
            f"no metrics for '{name}'",
            "give a service, database or key value name from 'slipstream status' (figures start 10 s after it runs)",
        )
    until = time.time() if now is None else now
    return build_report(store.query(name, until - seconds, until, now=until))


def render_text(report: Mapping[str, Any]) -> str:
    """The report for a terminal: headline figures, instances, then one sparkline per series."""

    def when(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def num(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{v:g}{unit}"

    lines = [
        f"{report['service']}: {when(report['since'])} .. {when(report['until'])} ({report['resolution_s']} s points)"
    ]
    if report["requests_per_s"] is not None:
        s, lat = report["status"], report["latency_ms"]
        lines.append(
            f"  requests  {num(report['requests_per_s'])}/s   "
            f"2xx {s['2xx']}  3xx {s['3xx']}  4xx {s['4xx']}  5xx {s['5xx']}"
        )
        lines.append(
            f"  latency   p50 {num(lat.get('p50'), ' ms')}  p95 {num(lat.get('p95'), ' ms')}  "
            f"p99 {num(lat.get('p99'), ' ms')}" + (f"  (avg {num(lat['avg'], ' ms')})" if lat.get("avg") else "")
        )
    for i in report["instances"]:
        cap = f" of {num(i['memory_limit_mb'])} MB" if i["memory_limit_mb"] else ""
        lines.append(
            f"  {i['id']}  cpu {num(i['cpu_percent'], '%')}  memory {num(i['rss_mb'], ' MB')}{cap}  "
            f"restarts {num(i['restarts'])}"
        )
    for kind in ("database", "keyvalue", "cron"):
        if kind in report:
            figures = "  ".join(f"{k} {num(v)}" for k, v in report[kind].items())
            lines.append(f"  {kind}  {figures}")
    width = max((len(f"{s['entity']} {s['name']}") for s in report["series"]), default=0)
    for s in report["series"]:
        values = [v for _, v in s["points"] if v is not None]
        last = num(values[-1]) if values else "-"
        lines.append(f"  {(s['entity'] + ' ' + s['name']).ljust(width)}  {s['spark']}  {last} {s['unit']}")
    if not report["series"]:
        lines.append("  no figures in this window")
    return "\n".join(lines) + "\n"
