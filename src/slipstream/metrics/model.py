"""The metrics' data: what each source reads (readings), what one collection round makes of them
(figures), and the stored series, with the table of metrics kept per kind of entity.

Readings come from the daemon's callables (one per source, see ``collect.py``); figures are what a
round computed from two consecutive readings (rates, CPU percent) and are what alerts and the
Prometheus endpoint see. Every stored row belongs to one *entity* (a kind and a name) and one
*owner*: the name a user passes to ``slipstream metrics NAME`` (the service of an instance, the
database or key value itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
Rollup = Literal["sum", "mean", "max", "last"]


@dataclass(frozen=True)
class Metric:
    """One stored metric of a kind: its name, unit, and how 10 s values roll up into a minute."""

    name: str
    unit: str
    rollup: Rollup
    help: str


# The metrics kept per entity kind, in the order they are packed into a stored row. Append only:
# a row written before a metric was added simply lacks it (read back as None).
KINDS: dict[str, tuple[Metric, ...]] = {
    "http": (  # a routed service, from HAProxy's counters (backend row of ``show stat``)
        Metric("requests", "requests", "sum", "responses in the interval"),
        Metric("http_1xx", "requests", "sum", "1xx responses"),
        Metric("http_2xx", "requests", "sum", "2xx responses"),
        Metric("http_3xx", "requests", "sum", "3xx responses"),
        Metric("http_4xx", "requests", "sum", "4xx responses"),
        Metric("http_5xx", "requests", "sum", "5xx responses (the app's and the proxy's own 503s)"),
        Metric("response_avg_ms", "ms", "mean", "HAProxy's average response time (last 1024 requests)"),
        Metric("total_avg_ms", "ms", "mean", "HAProxy's average total time (last 1024 requests)"),
        Metric("sessions", "sessions", "mean", "requests in flight"),
    ),
    "latency": (  # a routed service, from per-request samples (the access log)
        Metric("samples", "requests", "sum", "requests timed"),
        Metric("latency_p50_ms", "ms", "mean", "median total time"),
        Metric("latency_p95_ms", "ms", "mean", "95th percentile of total time"),
        Metric("latency_p99_ms", "ms", "mean", "99th percentile of total time"),
        Metric("latency_max_ms", "ms", "max", "slowest request"),
    ),
    "instance": (
        Metric("cpu_percent", "%", "mean", "CPU of the instance's process tree (100 = one core)"),
        Metric("rss_mb", "MB", "mean", "memory: the cgroup's working set, else the process tree's RSS"),
        Metric("memory_limit_mb", "MB", "last", "the instance's memory cap"),
        Metric("restarts", "restarts", "last", "restarts after crashes since supervision began"),
    ),
    "database": (
        Metric("connections", "connections", "mean", "backends connected to the database"),
        Metric("size_mb", "MB", "last", "pg_database_size"),
        Metric("longest_transaction_s", "s", "max", "age of the oldest open transaction"),
        Metric("wal_archive_age_s", "s", "last", "time since the cluster last archived a WAL segment"),
        Metric("wal_archive_failing", "bool", "max", "1 while the last archive attempt failed"),
    ),
    "keyvalue": (
        Metric("used_memory_mb", "MB", "mean", "Redis used_memory"),
        Metric("maxmemory_mb", "MB", "last", "Redis maxmemory (0: no limit)"),
        Metric("clients", "clients", "mean", "connected clients"),
    ),
    "cron": (  # written only in the interval a run finished
        Metric("runs", "runs", "sum", "runs that finished"),
        Metric("failures", "runs", "sum", "runs that failed or timed out"),
        Metric("duration_s", "s", "max", "duration of the run that finished"),
        Metric("exit_code", "code", "last", "exit code of the run that finished"),
    ),
    "disk": (
        Metric("used_percent", "%", "last", "used share of the file system"),
        Metric("free_mb", "MB", "last", "space left"),
    ),
}


def metric_index(kind: str, name: str) -> int:
    """The position of metric ``name`` in a packed row of ``kind``; KeyError when unknown."""
    for i, metric in enumerate(KINDS[kind]):
        if metric.name == name:
            return i
    raise KeyError(f"{kind} has no metric {name}")


# Readings: what the daemon's callables return ---------------------------------------------------
@dataclass(frozen=True)
class ProxyReading:
    """One read of HAProxy: ``show stat`` CSV and which backend serves which service."""

    csv: str
    backends: Mapping[str, str]  # backend ("be_03") -> service ("web"), from services.map


@dataclass(frozen=True)
class BackendCounters:
    """The counters of one backend row of ``show stat`` (cumulative since HAProxy started)."""

    backend: str
    mode: str  # "http" | "tcp"
    requests: int  # sum of the hrsp_* counters (responses sent)
    status: Mapping[str, int]  # "2xx" -> count, for every class of STATUS_CLASSES
    sessions_total: int  # stot
    sessions: int  # scur: in flight now
    response_avg_ms: float | None  # rtime
    total_avg_ms: float | None  # ttime


@dataclass(frozen=True)
class InstanceReading:
    """One instance as the runtime and the kernel report it right now."""

    instance_id: str
    service: str
    state: str  # InstanceState value: running | backoff | stopped
    pid: int | None
    create_time: float | None
    restarts: int
    memory_limit_mb: float | None
    cpu_seconds: float | None  # user + system of the process tree (or the cgroup), cumulative
    memory_bytes: int | None  # cgroup working set, else tree RSS


@dataclass(frozen=True)
class DatabaseReading:
    """One database of the cluster: activity, size, and the cluster's WAL archiver."""

    name: str  # blueprint name
    connections: int
    size_bytes: int
    longest_transaction_s: float
    wal_archived_age_s: float | None  # None: nothing archived yet (or archiving is off)
    wal_failing_for_s: float | None  # set while the last attempt failed: time since the last success


@dataclass(frozen=True)
class KeyValueReading:
    """One key value server's INFO figures."""

    name: str
    used_memory_bytes: int
    maxmemory_bytes: int
    clients: int


@dataclass(frozen=True)
class CronRun:
    """One run of a cron job as the state keeps it (``cron_runs`` table)."""

    run_id: int
    status: str  # running | succeeded | failed | timed_out
    exit_code: int | None
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class CronReading:
    """A cron job: its latest run and how often it is meant to run."""

    service: str
    last: CronRun | None
    interval_s: float | None  # seconds between two scheduled runs (croniter), None if unknown


@dataclass(frozen=True)
class BackupReading:
    """A database's scheduled backups: the latest good one, the latest failure, the schedule."""

    database: str
    last_ok_at: float | None
    last_failed_at: float | None
    interval_s: float
    created_at: float  # when the database was created (the clock for "never backed up")


@dataclass(frozen=True)
class DeployReading:
    """The latest finished deploy of a service."""

    service: str
    deploy_id: int
    status: str  # a DeployStatus value
    failed: bool
    finished_at: float | None
    message: str | None = None


@dataclass(frozen=True)
class DiskReading:
    """A file system slipstream writes to (its home, a persistent disk)."""

    path: str
    total_bytes: int
    used_bytes: int


# Figures: what one round made of the readings ----------------------------------------------------
@dataclass(frozen=True)
class HttpFigures:
    """A service's traffic over one round, from HAProxy's counters."""

    service: str
    interval_s: float
    requests: int
    status: Mapping[str, int]
    sessions: int
    response_avg_ms: float | None
    total_avg_ms: float | None

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.interval_s if self.interval_s > 0 else 0.0


@dataclass(frozen=True)
class LatencyFigures:
    """A service's per-request timings over one closed 10 s bucket (from the access log)."""

    service: str
    bucket: int  # start of the 10 s bucket (unix seconds)
    count: int
    errors: int  # 5xx among them
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class InstanceFigures:
    """An instance now: CPU over the last round, memory, cap, restarts."""

    instance_id: str
    service: str
    state: str
    cpu_percent: float | None
    rss_mb: float | None
    memory_limit_mb: float | None
    restarts: int


@dataclass(frozen=True)
class Figures:
    """Everything one collection round saw, at ``at`` (unix seconds)."""

    at: float
    http: Mapping[str, HttpFigures] = field(default_factory=dict)
    latency: Mapping[str, LatencyFigures] = field(default_factory=dict)
    instances: Mapping[str, InstanceFigures] = field(default_factory=dict)
    databases: Mapping[str, DatabaseReading] = field(default_factory=dict)
    keyvalues: Mapping[str, KeyValueReading] = field(default_factory=dict)
    crons: Mapping[str, CronReading] = field(default_factory=dict)
    backups: Mapping[str, BackupReading] = field(default_factory=dict)
    deploys: Mapping[str, DeployReading] = field(default_factory=dict)
    disks: Mapping[str, DiskReading] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)  # source -> why it could not be read


# Stored rows and series ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One stored row: every metric of an entity's kind at one bucket (None: not measured)."""

    kind: str
    name: str
    owner: str
    ts: int
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Series:
    """One metric of one entity over time, as a query returns it."""

    kind: str
    entity: str
    metric: str
    unit: str
    points: tuple[tuple[int, float | None], ...]
