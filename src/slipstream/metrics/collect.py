"""The collector: every 10 s, read each source, turn readings into figures, store them, tell
listeners (the alert monitor).

Lifecycle, as the daemon drives it:

1. Build it with a :class:`~slipstream.metrics.store.MetricsStore` and :class:`Sources`: one
   callable per source (``proxy``, ``instances``, ``databases``, ...). The daemon wires them to
   the real boundaries (see ``sources.py``); tests pass lambdas returning fixed readings. A
   source left None is not collected.
2. ``observe_request(service, status, total_ms, at)`` may be called from any thread (the access
   log pipeline) at any time: the request lands in its service's 10 s bucket histogram.
3. ``start()`` runs ``collect()`` every ``interval`` seconds in a thread; ``collect(now)`` is one
   round and can also be called directly (tests, the bench). A source that raises is skipped for
   that round and named in ``Figures.errors``; the others are still collected.
4. A round computes rates and CPU from the previous round's readings, closes the latency buckets
   that ended more than ``late_s`` ago (10 s rows; each full minute's merged histogram is kept for
   percentiles over any window), writes the rows, rolls up and prunes the store, and passes the
   figures to every listener.
5. ``stop()`` ends the thread (the current round finishes).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from slipstream.metrics.histogram import Histogram
from slipstream.metrics.model import (
    STATUS_CLASSES,
    BackupReading,
    CronReading,
    DatabaseReading,
    DeployReading,
    DiskReading,
    Figures,
    HttpFigures,
    InstanceFigures,
    InstanceReading,
    KeyValueReading,
    LatencyFigures,
    ProxyReading,
    Row,
)
from slipstream.metrics.parse import (
    HttpSnapshot,
    InstanceSnapshot,
    bucket,
    build_http_figures,
    build_instance_figures,
    build_rows,
    finished_since,
    parse_show_stat,
)
from slipstream.metrics.store import MetricsStore, latency_values

log = logging.getLogger("slipstream.metrics")
T = TypeVar("T")

BUCKET_S = 10
# Upper bounds (seconds) of the cumulative latency histogram shown to Prometheus.
PROMETHEUS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_OPEN_BUCKETS = 20_000  # bound on latency buckets held in memory (services x ~3)


@dataclass(frozen=True)
class Sources:
    """The callables a round reads; each returns readings of one kind (None: not collected)."""

    proxy: Callable[[], ProxyReading] | None = None
    instances: Callable[[], Sequence[InstanceReading]] | None = None
    databases: Callable[[], Sequence[DatabaseReading]] | None = None
    keyvalues: Callable[[], Sequence[KeyValueReading]] | None = None
    crons: Callable[[], Sequence[CronReading]] | None = None
    backups: Callable[[], Sequence[BackupReading]] | None = None
    deploys: Callable[[], Sequence[DeployReading]] | None = None
    disks: Callable[[], Sequence[DiskReading]] | None = None


@dataclass
class Totals:
    """Counters since the daemon started, for Prometheus (monotonic across HAProxy restarts)."""

    responses: dict[str, dict[str, int]] = field(default_factory=dict)  # service -> class -> count
    latency_buckets: dict[str, list[int]] = field(default_factory=dict)  # service -> count per bound (+Inf last)
    latency_sum_s: dict[str, float] = field(default_factory=dict)


@dataclass
class _Bucket:
    histogram: Histogram = field(default_factory=Histogram)
    errors: int = 0


class Collector:
    """Collects every source each round and keeps the latest figures (see the module docstring)."""

    def __init__(
        self,
        store: MetricsStore,
        sources: Sources,
        *,
        interval: float = 10.0,
        late_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sources = sources
        self.interval = interval
        self.late_s = late_s
        self.clock = clock
        self._listeners: list[Callable[[Figures], None]] = []
        self._lock = threading.Lock()  # guards what observe_request touches
        self._open: dict[tuple[str, int], _Bucket] = {}
        self._minutes: dict[tuple[str, int], Histogram] = {}
        self._closed_before = 0  # buckets starting before this are closed: late samples are dropped
        self.late_samples = 0
        self.dropped_samples = 0
        self._totals = Totals()
        self._http: dict[str, HttpSnapshot] = {}
        self._instances: dict[str, InstanceSnapshot] = {}
        self._crons: dict[str, CronReading] = {}
        self._latest = Figures(at=0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Inputs ------------------------------------------------------------------------------------
    def add_listener(self, listener: Callable[[Figures], None]) -> None:
        """Call ``listener(figures)`` after every round (in the collector's thread)."""
        self._listeners.append(listener)

    def observe_request(self, service: str, status: int, total_ms: float, at: float) -> None:
        """Count one request of ``service`` that answered ``status`` after ``total_ms`` (HAProxy's Tt)."""
        if not service or service == "-":
            return
        ts = bucket(at, BUCKET_S)
        with self._lock:
            if ts < self._closed_before:
                self.late_samples += 1
                return
            slot = self._open.get((service, ts))
            if slot is None:
                if len(self._open) >= MAX_OPEN_BUCKETS:
                    self.dropped_samples += 1
                    return
                slot = self._open[(service, ts)] = _Bucket()
            slot.histogram.add(total_ms)
            if 500 <= status <= 599:
                slot.errors += 1
            counts = self._totals.latency_buckets.setdefault(service, [0] * (len(PROMETHEUS_BUCKETS) + 1))
            counts[bisect.bisect_left(PROMETHEUS_BUCKETS, total_ms / 1000)] += 1
            self._totals.latency_sum_s[service] = self._totals.latency_sum_s.get(service, 0.0) + total_ms / 1000

    # Outputs -----------------------------------------------------------------------------------
    def latest(self) -> Figures:
        """The figures of the last round (empty before the first)."""
        return self._latest

    def totals(self) -> Totals:
        """A copy of the counters since start."""
        with self._lock:
            return Totals(
                responses={s: dict(c) for s, c in self._totals.responses.items()},
                latency_buckets={s: list(c) for s, c in self._totals.latency_buckets.items()},
                latency_sum_s=dict(self._totals.latency_sum_s),
            )

    # One round ---------------------------------------------------------------------------------
    def collect(self, now: float | None = None) -> Figures:
        """Read every source once, store the rows, and return (and keep) the figures."""
        at = self.clock() if now is None else now
        errors: dict[str, str] = {}
        s = self.sources

        http: dict[str, HttpFigures] = {}
        proxy = _read("proxy", s.proxy, errors)
        if proxy is not None:
            try:
                counters = parse_show_stat(proxy.csv)
            except Exception as exc:
                errors["proxy"] = str(exc)
            else:
                http, self._http = build_http_figures(self._http, counters, proxy.backends, at)
        instances: dict[str, InstanceFigures] = {}
        readings = _read("instances", s.instances, errors)
        if readings is not None:
            instances, self._instances = build_instance_figures(self._instances, readings, at)
        crons = {c.service: c for c in _read("crons", s.crons, errors) or ()}
        finished = finished_since(self._crons, crons)
        if s.crons is not None and "crons" not in errors:
            self._crons = crons
        latency, latency_rows = self._close_buckets(at)
        figures = Figures(
            at=at,
            http=http,
            latency=latency,
            instances=instances,
            databases={d.name: d for d in _read("databases", s.databases, errors) or ()},
            keyvalues={k.name: k for k in _read("keyvalues", s.keyvalues, errors) or ()},
            crons=crons,
            backups={b.database: b for b in _read("backups", s.backups, errors) or ()},
            deploys={d.service: d for d in _read("deploys", s.deploys, errors) or ()},
            disks={d.path: d for d in _read("disks", s.disks, errors) or ()},
            errors=errors,
        )
        with self._lock:
            for h in http.values():
                totals = self._totals.responses.setdefault(h.service, dict.fromkeys(STATUS_CLASSES, 0))
                for cls, n in h.status.items():
                    totals[cls] = totals.get(cls, 0) + n
        try:
            self.store.record([*build_rows(figures, finished), *latency_rows])
            self.store.maintain(at)
        except Exception:
            log.exception("metrics could not be stored this round")
        self._latest = figures
        for listener in list(self._listeners):
            try:
                listener(figures)
            except Exception:
                log.exception("a metrics listener failed")
        return figures

    def _close_buckets(self, at: float) -> tuple[dict[str, LatencyFigures], list[Row]]:
        """Close the latency buckets that ended ``late_s`` ago: figures, rows and minute histograms."""
        cutoff = bucket(at - self.late_s - BUCKET_S, BUCKET_S) + BUCKET_S  # buckets starting before are over
        with self._lock:
            self._closed_before = max(self._closed_before, cutoff)
            closing = sorted((k for k in self._open if k[1] < cutoff), key=lambda k: k[1])
            done = [(k, self._open.pop(k)) for k in closing]
        figures: dict[str, LatencyFigures] = {}
        rows: list[Row] = []
        for (service, ts), slot in done:
            h = slot.histogram
            values = latency_values(h)
            rows.append(Row("latency", service, service, ts, values))
            figures[service] = LatencyFigures(
                service=service,
                bucket=ts,
                count=h.count,
                errors=slot.errors,
                p50_ms=values[1] or 0.0,
                p95_ms=values[2] or 0.0,
                p99_ms=values[3] or 0.0,
                max_ms=h.max_ms,
            )
            minute = self._minutes.setdefault((service, ts // 60 * 60), Histogram())
            minute.merge(h)
        done_minutes = [(s, m, self._minutes.pop((s, m))) for s, m in [k for k in self._minutes if k[1] + 60 <= cutoff]]
        if done_minutes:
            try:
                self.store.record_histograms(done_minutes)
            except Exception:
                log.exception("latency histograms could not be stored")
        return figures, rows

    # Thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run a round every ``interval`` seconds in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="metrics")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread after its current round."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_round = time.monotonic()
        while not self._stop.is_set():
            try:
                self.collect()
            except Exception:
                log.exception("metrics round failed")
            next_round += self.interval
            delay = next_round - time.monotonic()
            if delay < 0:  # a round overran: skip the missed ticks instead of bursting
                next_round = time.monotonic()
                delay = 0
            self._stop.wait(delay)


def _read(name: str, source: Callable[[], T] | None, errors: dict[str, str]) -> T | None:
    """Call one source; on failure note why in ``errors`` and return None."""
    if source is None:
        return None
    try:
        return source()
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
        log.debug("metrics source %s failed", name, exc_info=True)
        return None
