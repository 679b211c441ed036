"""Pure parsers and builders: source answers in, readings and figures out, figures into rows.

- HAProxy ``show stat`` CSV -> :class:`BackendCounters` per backend; two reads -> per-service
  :class:`HttpFigures` (counter deltas, surviving an HAProxy restart and a backend handed to
  another service);
- cgroup files -> memory working set and CPU seconds; two instance readings -> CPU percent;
- PostgreSQL rows (the SQL is here too) -> :class:`DatabaseReading`; Redis ``INFO`` ->
  :class:`KeyValueReading`; state records -> cron, backup and deploy readings;
- one round's :class:`Figures` -> the stored :class:`Row` list.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slipstream.errors import CommandFailed, InvalidInput
from slipstream.metrics.model import (
    KINDS,
    STATUS_CLASSES,
    BackendCounters,
    BackupReading,
    CronReading,
    CronRun,
    DatabaseReading,
    DeployReading,
    Figures,
    HttpFigures,
    InstanceFigures,
    InstanceReading,
    KeyValueReading,
    Row,
)

MB = 1024 * 1024
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MACHINE = ":machine"  # owner of machine-wide rows (disks): never a service name


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"2d"`` or ``"250ms"``; InvalidInput otherwise."""
    if isinstance(text, bool):
        raise InvalidInput(f"{what} {text!r} is not a duration", "write it like 30s, 15m, 1h or 2d")
    if isinstance(text, (int, float)):
        if not math.isfinite(text) or text < 0:
            raise InvalidInput(f"{what} {text!r} is not a duration", "write it like 30s, 15m, 1h or 2d")
        return float(text)
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"{what} {text!r} is not a duration", "write it like 30s, 15m, 1h or 2d")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


# HAProxy -----------------------------------------------------------------------------------------
def parse_show_stat(text: str) -> dict[str, BackendCounters]:
    """The BACKEND rows of a ``show stat`` CSV answer, by backend name.

    Raises :class:`CommandFailed` when the answer is not ``show stat`` CSV (HAProxy answered an
    error). Fields HAProxy leaves empty read as 0 (counters) or None (averages).
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# pxname,svname"):
        raise CommandFailed(f"unexpected answer to 'show stat': {text.strip()[:200]!r}")
    header = next(csv.reader([lines[0][2:]]))
    col = {name: i for i, name in enumerate(header)}
    if "pxname" not in col or "svname" not in col:
        raise CommandFailed(f"'show stat' lacks the proxy and server columns: {lines[0][:200]!r}")
    wanted = {key: col.get(key) for key in ("mode", "stot", "scur", "rtime", "ttime")}
    status_cols = {cls: col.get(f"hrsp_{cls}") for cls in STATUS_CLASSES}
    out: dict[str, BackendCounters] = {}
    rows = csv.reader(line for line in lines[1:] if ",BACKEND," in line)  # only backend rows matter
    for row in rows:
        if len(row) <= col["svname"] or row[col["svname"]] != "BACKEND":
            continue

        def field(key: str, row: list[str] = row) -> str | None:
            i = wanted[key]
            return row[i] if i is not None and i < len(row) else None

        status = {cls: _int(row[i] if i is not None and i < len(row) else None) for cls, i in status_cols.items()}
        name = row[col["pxname"]]
        out[name] = BackendCounters(
            backend=name,
            mode=field("mode") or "http",
            requests=sum(status.values()),
            status=status,
            sessions_total=_int(field("stot")),
            sessions=_int(field("scur")),
            response_avg_ms=_float(field("rtime")),
            total_avg_ms=_float(field("ttime")),
        )
    return out


def counter_delta(previous: int, current: int) -> int:
    """How much a cumulative counter grew; a counter that went down was reset (restart): all of it."""
    return current - previous if current >= previous else current


@dataclass(frozen=True)
class HttpSnapshot:
    """The last counters seen for a service, kept between rounds to compute deltas."""

    backend: str
    counters: BackendCounters
    at: float


def build_http_figures(
    previous: Mapping[str, HttpSnapshot],
    counters: Mapping[str, BackendCounters],
    backends: Mapping[str, str],
    at: float,
) -> tuple[dict[str, HttpFigures], dict[str, HttpSnapshot]]:
    """Per-service figures since ``previous`` and the snapshots for the next round.

    A service seen for the first time, or now on another backend than before (its counters
    belong to whoever held that backend), gets a snapshot but no figures this round. Only HTTP
    backends count: a private (TCP) service has no responses.
    """
    figures: dict[str, HttpFigures] = {}
    snapshots: dict[str, HttpSnapshot] = {}
    for backend, service in sorted(backends.items()):
        now = counters.get(backend)
        if now is None or now.mode != "http":
            continue
        snapshots[service] = HttpSnapshot(backend, now, at)
        before = previous.get(service)
        if before is None or before.backend != backend or at <= before.at:
            continue
        status = {cls: counter_delta(before.counters.status.get(cls, 0), n) for cls, n in now.status.items()}
        figures[service] = HttpFigures(
            service=service,
            interval_s=at - before.at,
            requests=sum(status.values()),
            status=status,
            sessions=now.sessions,
            response_avg_ms=now.response_avg_ms,
            total_avg_ms=now.total_avg_ms,
        )
    return figures, snapshots


# Instances ---------------------------------------------------------------------------------------
def parse_cgroup_memory(version: int, usage: str, stat: str) -> int | None:
    """An instance cgroup's working set in bytes: usage minus inactive file cache (what the kernel
    cannot simply drop before it OOM-kills), from v2 ``memory.current``/``memory.stat`` or v1
    ``memory.usage_in_bytes``/``memory.stat``; None when unreadable."""
    usage = usage.strip()
    if not usage.isdigit():
        return None
    key = "inactive_file" if version == 2 else "total_inactive_file"
    inactive = 0
    for line in stat.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            inactive = int(value)
    return max(0, int(usage) - inactive)


def parse_cgroup_cpu(text: str) -> float | None:
    """CPU seconds used by a v2 cgroup, from its ``cpu.stat`` (``usage_usec``); None when absent."""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


@dataclass(frozen=True)
class InstanceSnapshot:
    """The last reading of an instance, kept between rounds for its CPU percent."""

    reading: InstanceReading
    at: float


def build_instance_figures(
    previous: Mapping[str, InstanceSnapshot], readings: Iterable[InstanceReading], at: float
) -> tuple[dict[str, InstanceFigures], dict[str, InstanceSnapshot]]:
    """Per-instance figures; CPU percent needs the same process (pid and start time) as before."""
    figures: dict[str, InstanceFigures] = {}
    snapshots: dict[str, InstanceSnapshot] = {}
    for r in readings:
        snapshots[r.instance_id] = InstanceSnapshot(r, at)
        before = previous.get(r.instance_id)
        cpu: float | None = None
        if (
            before is not None
            and r.cpu_seconds is not None
            and before.reading.cpu_seconds is not None
            and (before.reading.pid, before.reading.create_time) == (r.pid, r.create_time)
            and at > before.at
        ):
            cpu = max(0.0, (r.cpu_seconds - before.reading.cpu_seconds) / (at - before.at) * 100)
        figures[r.instance_id] = InstanceFigures(
            instance_id=r.instance_id,
            service=r.service,
            state=r.state,
            cpu_percent=cpu,
            rss_mb=None if r.memory_bytes is None else r.memory_bytes / MB,
            memory_limit_mb=r.memory_limit_mb,
            restarts=r.restarts,
        )
    return figures, snapshots


# PostgreSQL --------------------------------------------------------------------------------------
# One row per database named in %(names)s: name, size, connections, oldest open transaction (s).
DATABASE_SQL = """
SELECT d.datname,
       pg_database_size(d.datname),
       (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname),
       (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start)), 0)
          FROM pg_stat_activity a WHERE a.datname = d.datname AND a.xact_start IS NOT NULL)
  FROM pg_database d
 WHERE d.datname = ANY(%(names)s)
"""
# The cluster's WAL archiver: seconds since the last success, the last failure, and its stats reset.
ARCHIVER_SQL = """
SELECT extract(epoch FROM clock_timestamp() - last_archived_time),
       extract(epoch FROM clock_timestamp() - last_failed_time),
       extract(epoch FROM clock_timestamp() - stats_reset)
  FROM pg_stat_archiver
"""


def parse_database_rows(
    rows: Sequence[Sequence[Any]], archiver: Sequence[Any] | None, names: Mapping[str, str]
) -> list[DatabaseReading]:
    """Readings from :data:`DATABASE_SQL` rows and the :data:`ARCHIVER_SQL` row.

    ``names`` maps PostgreSQL database names to blueprint names. Archiving counts as failing when
    the last failure is more recent than the last success; it has been failing since that success
    (or, when nothing was ever archived, since the archiver's statistics began).
    """
    archived_age = failed_age = reset_age = None
    if archiver is not None:
        archived_age, failed_age, reset_age = (None if v is None else float(v) for v in (*archiver, None, None)[:3])
    failing_for: float | None = None
    if failed_age is not None and (archived_age is None or failed_age < archived_age):
        failing_for = archived_age if archived_age is not None else max(failed_age, reset_age or 0.0)
    out = []
    for datname, size, connections, longest in rows:
        out.append(
            DatabaseReading(
                name=names.get(str(datname), str(datname)),
                connections=int(connections),
                size_bytes=int(size),
                longest_transaction_s=float(longest or 0),
                wal_archived_age_s=archived_age,
                wal_failing_for_s=failing_for,
            )
        )
    return sorted(out, key=lambda r: r.name)


# Redis, cron, backups, deploys -------------------------------------------------------------------
def keyvalue_reading(name: str, info: Mapping[str, str]) -> KeyValueReading:
    """A reading from a parsed ``INFO`` mapping (``keyvalue.commands.parse_info``)."""
    try:
        return KeyValueReading(
            name=name,
            used_memory_bytes=int(info["used_memory"]),
            maxmemory_bytes=int(info.get("maxmemory", "0")),
            clients=int(info["connected_clients"]),
        )
    except (KeyError, ValueError) as exc:
        raise CommandFailed(f"INFO of key value {name} lacks a figure ({exc})") from None


def cron_run(record: Mapping[str, Any]) -> CronRun:
    """A :class:`CronRun` from a ``cron_runs`` row as ``Store.cron_runs`` returns it."""
    return CronRun(
        run_id=int(record["id"]),
        status=str(record["status"]),
        exit_code=None if record.get("exit_code") is None else int(record["exit_code"]),
        started_at=float(record["started_at"]),
        finished_at=None if record.get("finished_at") is None else float(record["finished_at"]),
    )


def backup_reading(
    database: str, backups: Iterable[tuple[float, str]], interval_s: float, created_at: float
) -> BackupReading:
    """The reading of ``database`` from its scheduled backups as ``(created_at, status)`` pairs."""
    ok = [at for at, status in backups if status == "ok"]
    failed = [at for at, status in backups if status != "ok"]
    return BackupReading(database, max(ok, default=None), max(failed, default=None), interval_s, created_at)


def deploy_reading(record: Mapping[str, Any], failed: bool) -> DeployReading:
    """A :class:`DeployReading` from a deploy record's public fields (``failed`` from DeployStatus)."""
    return DeployReading(
        service=str(record["service"]),
        deploy_id=int(record["id"]),
        status=str(record["status"]),
        failed=failed,
        finished_at=None if record.get("finished_at") is None else float(record["finished_at"]),
        message=record.get("message"),
    )


# Rows --------------------------------------------------------------------------------------------
def bucket(at: float, resolution: int = 10) -> int:
    """The start of the ``resolution``-second bucket holding ``at``."""
    return int(at // resolution) * resolution


def build_rows(figures: Figures, finished_runs: Mapping[str, CronRun] | None = None) -> list[Row]:
    """The 10 s rows of one round (latency rows are written when their bucket closes, elsewhere).

    ``finished_runs`` are the cron runs that finished since the previous round, by service.
    """
    ts = bucket(figures.at)
    rows: list[Row] = []
    for h in figures.http.values():
        values = [float(h.requests), *(float(h.status.get(c, 0)) for c in ("1xx", "2xx", "3xx", "4xx", "5xx"))]
        rows.append(Row("http", h.service, h.service, ts, (*values, h.response_avg_ms, h.total_avg_ms, h.sessions)))
    for i in figures.instances.values():
        rows.append(
            Row(
                "instance",
                i.instance_id,
                i.service,
                ts,
                (i.cpu_percent, i.rss_mb, i.memory_limit_mb, float(i.restarts)),
            )
        )
    for d in figures.databases.values():
        failing = (
            None if d.wal_archived_age_s is None and d.wal_failing_for_s is None else float(bool(d.wal_failing_for_s))
        )
        rows.append(
            Row(
                "database",
                d.name,
                d.name,
                ts,
                (float(d.connections), d.size_bytes / MB, d.longest_transaction_s, d.wal_archived_age_s, failing),
            )
        )
    for k in figures.keyvalues.values():
        rows.append(
            Row("keyvalue", k.name, k.name, ts, (k.used_memory_bytes / MB, k.maxmemory_bytes / MB, float(k.clients)))
        )
    for service, run in sorted((finished_runs or {}).items()):
        duration = None if run.finished_at is None else run.finished_at - run.started_at
        code = None if run.exit_code is None else float(run.exit_code)
        rows.append(Row("cron", service, service, ts, (1.0, float(run.status != "succeeded"), duration, code)))
    for disk in figures.disks.values():
        used = 100 * disk.used_bytes / disk.total_bytes if disk.total_bytes else None
        rows.append(Row("disk", disk.path, MACHINE, ts, (used, (disk.total_bytes - disk.used_bytes) / MB)))
    for row in rows:
        assert len(row.values) == len(KINDS[row.kind]), row
    return rows


def finished_since(previous: Mapping[str, CronReading], current: Mapping[str, CronReading]) -> dict[str, CronRun]:
    """The cron runs that finished between two readings (a new finished run per service)."""
    out: dict[str, CronRun] = {}
    for service, reading in current.items():
        run = reading.last
        if run is None or run.finished_at is None:
            continue
        before = previous.get(service)
        if before is not None and before.last is not None and before.last == run:
            continue
        if before is None:
            continue  # first sight: the run finished before we watched
        out[service] = run
    return out


def _int(value: str | None) -> int:
    return int(value) if value and value.lstrip("-").isdigit() else 0


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
