"""The metrics store: SQLite, 10 s rows for 24 h, rolled up into 1 min rows kept 14 days.

Why SQLite (and this layout): slipstream already keeps its state in SQLite, so this adds no
dependency and no process, and one machine's series fit. A row holds *every* metric of one entity
at one time, packed as float32 (NaN for "not measured"), so a web service with one instance costs
three rows per 10 s (traffic, latency, instance) instead of twenty. Rows older than a span (an
hour of 10 s rows, a day of 1 min rows) are sealed into one zlib-compressed chunk per entity, the
values stored column by column: that removes SQLite's per-row overhead and lets steady or zero
series compress to almost nothing (sizes in ``bench/metrics_bench.py``). Tables:

    entities(id, kind, name, owner, last_seen)        one per (kind, name): "instance" "web-d3-1"
    points(res, entity, ts, data)      WITHOUT ROWID   open rows: res 10 or 60, packed float32
    chunks(res, entity, start, data)                   sealed spans: compressed, column-major
    hist(entity, ts, data)             WITHOUT ROWID   latency histogram per service per minute (24 h)

Lifecycle: the collector calls ``record`` every round and ``maintain`` after it; ``maintain``
rolls every complete minute (older than ``ROLLUP_DELAY``, so late access-log samples have landed)
into a 1 min row per entity (each metric by its rule in ``model.KINDS``: sum, mean, max or last;
latency percentiles from the minute's merged histogram), seals the oldest complete span of each
resolution (a batch of entities per call, so no round does much of it), and every 10 minutes deletes
10 s data and histograms older than 24 h, 1 min data older than 14 days (whole chunks: up to one
span more), and entities not seen for 14 days. Size is thus bounded by the number of entities.
Writes use ``synchronous=NORMAL``: a power cut may lose the last seconds of metrics, never the file.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import InvalidInput
from slipstream.metrics.histogram import Histogram, decode, encode, merged
from slipstream.metrics.model import KINDS, Row, Series

RAW_RESOLUTION = 10
ROLLUP_RESOLUTION = 60
RAW_RETENTION_S = 24 * 3600
ROLLUP_RETENTION_S = 14 * 24 * 3600
ROLLUP_DELAY = 40  # seconds after a minute ends before it is rolled up (late samples land first)
MAX_RAW_WINDOW = 6 * 3600  # a longer query reads 1 min rows
PRUNE_EVERY_S = 600  # expired rows are deleted every 10 minutes (so they outlive retention by that much)
CHUNK_S = {RAW_RESOLUTION: 3600, ROLLUP_RESOLUTION: 86400}  # rows older than a span are sealed into one chunk
SEAL_BATCH = 100  # entities sealed per maintain call (bounds the work of one round)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    UNIQUE (kind, name)
);
CREATE INDEX IF NOT EXISTS entities_owner ON entities(owner);
CREATE TABLE IF NOT EXISTS points (
    res INTEGER NOT NULL,
    entity INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (res, entity, ts)
) WITHOUT ROWID;
-- a rowid table: chunks are kilobytes, and WITHOUT ROWID wastes pages on rows that large
CREATE TABLE IF NOT EXISTS chunks (
    res INTEGER NOT NULL,
    entity INTEGER NOT NULL,
    start INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (res, entity, start)
);
CREATE TABLE IF NOT EXISTS hist (
    entity INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (entity, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


# Pure helpers ------------------------------------------------------------------------------------
def pack(values: Sequence[float | None]) -> bytes:
    """Values as little-endian float32, None as NaN."""
    return struct.pack(f"<{len(values)}f", *(math.nan if v is None else v for v in values))


def unpack(data: bytes, width: int) -> tuple[float | None, ...]:
    """The values :func:`pack` wrote, padded with None to ``width`` (rows older than a new metric)."""
    count = len(data) // 4
    raw = struct.unpack(f"<{count}f", data[: count * 4])
    values = tuple(None if math.isnan(v) else float(v) for v in raw[:width])
    return values + (None,) * (width - len(values))


def pack_chunk(start: int, res: int, samples: Sequence[tuple[int, Sequence[float | None]]], width: int) -> bytes:
    """Samples of one entity within one span as one compressed blob: their offsets from ``start``
    (in steps of ``res``), then each metric's values in a column (columns compress well)."""
    n = len(samples)
    offsets = [(ts - start) // res for ts, _ in samples]
    rows = [
        [math.nan if v is None else v for v in values[:width]] + [math.nan] * (width - len(values))
        for _, values in samples
    ]
    columns = [v for column in zip(*rows, strict=True) for v in column] if rows else []
    raw = struct.pack(f"<HB{n}H{n * width}f", n, width, *offsets, *columns)
    return zlib.compress(raw, 6)


def unpack_chunk(data: bytes, start: int, res: int, width: int) -> list[tuple[int, tuple[float | None, ...]]]:
    """The samples :func:`pack_chunk` sealed, padded with None to ``width`` (as :func:`unpack`)."""
    raw = zlib.decompress(data)
    n, stored = struct.unpack_from("<HB", raw)
    offsets = struct.unpack_from(f"<{n}H", raw, 3)
    flat = struct.unpack_from(f"<{n * stored}f", raw, 3 + 2 * n)
    out = []
    for j, offset in enumerate(offsets):
        values = tuple(
            None if math.isnan(v) else float(v) for v in (flat[i * n + j] for i in range(min(stored, width)))
        )
        out.append((start + offset * res, values + (None,) * (width - len(values))))
    return out


def rollup_values(kind: str, rows: Sequence[Sequence[float | None]]) -> tuple[float | None, ...]:
    """One minute's values of ``kind`` from its 10 s rows (in time order), metric by metric."""
    out: list[float | None] = []
    for i, metric in enumerate(KINDS[kind]):
        present = [v for v in (r[i] for r in rows) if v is not None]
        if not present:
            out.append(None)
        elif metric.rollup == "sum":
            out.append(math.fsum(present))
        elif metric.rollup == "mean":
            out.append(math.fsum(present) / len(present))
        elif metric.rollup == "max":
            out.append(max(present))
        else:
            out.append(present[-1])
    return tuple(out)


def latency_values(h: Histogram) -> tuple[float | None, ...]:
    """A latency row (samples, p50, p95, p99, max) from a histogram."""
    if h.count == 0:
        return (0.0, None, None, None, None)
    return (float(h.count), *h.quantiles((0.5, 0.95, 0.99)), h.max_ms)


def choose_resolution(since: float, until: float, now: float) -> int:
    """10 s rows for windows up to 6 h that the raw rows still cover, else 1 min rows."""
    if until - since <= MAX_RAW_WINDOW and since >= now - RAW_RETENTION_S:
        return RAW_RESOLUTION
    return ROLLUP_RESOLUTION


@dataclass(frozen=True)
class QueryResult:
    """The series of one owner over a window, and its merged latency histogram (when kept)."""

    owner: str
    since: float
    until: float
    resolution: int
    series: tuple[Series, ...]
    histograms: dict[str, Histogram]  # latency entity name -> merged histogram of the window


class MetricsStore:
    """The SQLite file of metrics; safe to share between the collector thread and API threads."""

    def __init__(
        self,
        path: Path,
        *,
        raw_retention_s: float = RAW_RETENTION_S,
        rollup_retention_s: float = ROLLUP_RETENTION_S,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        self.path = Path(path)
        self.prune_every_s = prune_every_s
        self.raw_retention_s = raw_retention_s
        self.rollup_retention_s = rollup_retention_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._ids: dict[tuple[str, str], int] = {}
        self._seen: dict[int, int] = {}  # entity -> last_seen as written
        self._pruned_at = 0.0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Writes ------------------------------------------------------------------------------------
    def record(self, rows: Iterable[Row]) -> None:
        """Store 10 s rows (a row for the same entity and bucket replaces the earlier one)."""
        rows = list(rows)
        for row in rows:
            if row.kind not in KINDS or len(row.values) != len(KINDS[row.kind]):
                raise InvalidInput(f"a {row.kind} row has {len(row.values)} values, which is not what that kind holds")
        with self._lock, self._tx():
            params = []
            seen: dict[int, int] = {}
            for row in rows:
                entity = self._entity(row.kind, row.name, row.owner, row.ts)
                if row.ts >= self._seen.get(entity, 0) + ROLLUP_RESOLUTION:  # last_seen: kept to the minute
                    seen[entity] = max(seen.get(entity, 0), row.ts)
                params.append((RAW_RESOLUTION, entity, row.ts, pack(row.values)))
            self._db.executemany("INSERT OR REPLACE INTO points(res, entity, ts, data) VALUES (?,?,?,?)", params)
            self._db.executemany(
                "UPDATE entities SET last_seen = max(last_seen, ?) WHERE id = ?", [(ts, e) for e, ts in seen.items()]
            )
            self._seen.update(seen)

    def record_histogram(self, service: str, minute: int, h: Histogram) -> None:
        """Keep one minute's latency histogram of ``service`` (merged with one already kept)."""
        self.record_histograms([(service, minute, h)])

    def record_histograms(self, histograms: Iterable[tuple[str, int, Histogram]]) -> None:
        """Keep minutes' latency histograms ``(service, minute, histogram)`` in one transaction."""
        with self._lock, self._tx():
            for service, minute, h in histograms:
                entity = self._entity("latency", service, service, minute)
                row = self._db.execute("SELECT data FROM hist WHERE entity=? AND ts=?", (entity, minute)).fetchone()
                if row is not None:
                    h = merged([decode(row[0]), h])
                self._db.execute(
                    "INSERT OR REPLACE INTO hist(entity, ts, data) VALUES (?,?,?)", (entity, minute, encode(h))
                )

    def maintain(self, now: float) -> int:
        """Roll up complete minutes and delete expired rows; the number of 1 min rows written."""
        limit = int((now - ROLLUP_DELAY) // ROLLUP_RESOLUTION) * ROLLUP_RESOLUTION
        with self._lock:
            start = int(self._meta("rolled_until") or 0)
            if start >= limit:
                return 0
            start = max(start, limit - int(self.raw_retention_s))
            written = 0
            with self._tx():
                entities = self._db.execute(  # last_seen lags the newest row by under a minute
                    "SELECT id, kind FROM entities WHERE last_seen >= ?", (start - ROLLUP_RESOLUTION,)
                ).fetchall()
                for entity, kind in entities:
                    written += self._rollup(entity, kind, start, limit)
                for res in (RAW_RESOLUTION, ROLLUP_RESOLUTION):
                    self._seal(res, limit)
                if now - self._pruned_at >= self.prune_every_s:
                    self._prune(now)
                    self._pruned_at = now
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('rolled_until', ?)", (str(limit),))
            return written

    # Reads -------------------------------------------------------------------------------------
    def query(
        self, owner: str, since: float, until: float, resolution: int | None = None, *, now: float | None = None
    ) -> QueryResult:
        """Every series of ``owner`` (a service, database, key value) between ``since`` and ``until``;
        the resolution is chosen for the window (see :func:`choose_resolution`) unless given."""
        if until <= since:
            raise InvalidInput(f"the window ends ({until:.0f}) before it starts ({since:.0f})")
        res = resolution or choose_resolution(since, until, time.time() if now is None else now)
        if res not in (RAW_RESOLUTION, ROLLUP_RESOLUTION):
            raise InvalidInput(f"resolution {res} s is not kept", "use 10 or 60")
        lo, hi = int(since // res) * res, int(until)  # rows with lo < ts <= hi: a row closes its interval
        series: list[Series] = []
        histograms: dict[str, Histogram] = {}
        with self._lock:
            entities = self._db.execute(
                "SELECT id, kind, name FROM entities WHERE owner=? ORDER BY kind, name", (owner,)
            ).fetchall()
            for entity, kind, name in entities:
                if kind not in KINDS:
                    continue
                width = len(KINDS[kind])
                found = {
                    ts: values
                    for start, data in self._db.execute(
                        "SELECT start, data FROM chunks WHERE res=? AND entity=? AND start>? AND start<=?",
                        (res, entity, lo - CHUNK_S[res], hi),
                    )
                    for ts, values in unpack_chunk(data, int(start), res, width)
                    if lo < ts <= hi
                }
                for ts, data in self._db.execute(
                    "SELECT ts, data FROM points WHERE res=? AND entity=? AND ts>? AND ts<=?", (res, entity, lo, hi)
                ):
                    found[int(ts)] = unpack(data, width)
                decoded = sorted(found.items())
                if decoded:
                    for i, metric in enumerate(KINDS[kind]):
                        points = tuple((ts, values[i]) for ts, values in decoded)
                        series.append(Series(kind, name, metric.name, metric.unit, points))
                if kind == "latency":
                    hs = self._db.execute(
                        "SELECT data FROM hist WHERE entity=? AND ts>=? AND ts<=?",
                        (entity, int(since // 60) * 60, hi),
                    ).fetchall()
                    if hs:
                        histograms[name] = merged(decode(data) for (data,) in hs)
        return QueryResult(owner, since, until, res, tuple(series), histograms)

    def owners(self) -> list[str]:
        """Every owner with stored rows."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT owner FROM entities ORDER BY owner")]

    def size_bytes(self) -> int:
        """Bytes used by the database file (pages in use, after checkpointing the WAL)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
            return int((pages - free) * size)

    def data_bytes(self) -> dict[str, int]:
        """Bytes of stored data (blobs, before SQLite's page overhead) by kind: 10 s, 1 min, histograms."""
        with self._lock:
            out = {"10s": 0, "1m": 0, "histograms": 0}
            for table in ("points", "chunks"):
                for res, size in self._db.execute(f"SELECT res, sum(length(data)) FROM {table} GROUP BY res"):
                    out["10s" if res == RAW_RESOLUTION else "1m"] += int(size or 0)
            out["histograms"] = int(self._db.execute("SELECT sum(length(data)) FROM hist").fetchone()[0] or 0)
            return out

    def chunk_density(self, resolution: int) -> float | None:
        """Bytes per sample in the sealed chunks of ``resolution`` (None before the first seal)."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM chunks WHERE res=?", (resolution,)).fetchall()
        samples = sum(int(struct.unpack_from("<H", zlib.decompress(data))[0]) for (data,) in rows)
        return sum(len(data) for (data,) in rows) / samples if samples else None

    def count_rows(self, resolution: int) -> int:
        """How many samples of ``resolution`` are kept, in rows and in sealed chunks (tests, bench)."""
        with self._lock:
            rows = int(self._db.execute("SELECT count(*) FROM points WHERE res=?", (resolution,)).fetchone()[0])
            chunks = self._db.execute("SELECT data FROM chunks WHERE res=?", (resolution,)).fetchall()
            return rows + sum(int(struct.unpack_from("<H", zlib.decompress(data))[0]) for (data,) in chunks)

    # Internals ---------------------------------------------------------------------------------
    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def _entity(self, kind: str, name: str, owner: str, ts: int) -> int:
        key = (kind, name)
        known = self._ids.get(key)
        if known is not None:
            return known
        self._db.execute(
            "INSERT INTO entities(kind, name, owner, last_seen) VALUES (?,?,?,?) "
            "ON CONFLICT(kind, name) DO UPDATE SET owner=excluded.owner",
            (kind, name, owner, ts),
        )
        entity = int(self._db.execute("SELECT id FROM entities WHERE kind=? AND name=?", key).fetchone()[0])
        self._ids[key] = entity
        return entity

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _rollup(self, entity: int, kind: str, start: int, limit: int) -> int:
        """Write the 1 min rows of one entity for the minutes in [start, limit)."""
        if kind not in KINDS:
            return 0
        width = len(KINDS[kind])
        minutes: dict[int, list[tuple[float | None, ...]]] = {}
        for ts, data in self._db.execute(
            "SELECT ts, data FROM points WHERE res=? AND entity=? AND ts>=? AND ts<? ORDER BY ts",
            (RAW_RESOLUTION, entity, start, limit),
        ):
            minutes.setdefault(int(ts) // 60 * 60, []).append(unpack(data, width))
        hists: dict[int, Histogram] = {}
        if kind == "latency":
            for ts, data in self._db.execute(
                "SELECT ts, data FROM hist WHERE entity=? AND ts>=? AND ts<?", (entity, start, limit)
            ):
                hists[int(ts)] = decode(data)
        params = []
        for minute in sorted(set(minutes) | set(hists)):
            h = hists.get(minute)
            values = latency_values(h) if h is not None else rollup_values(kind, minutes[minute])
            params.append((ROLLUP_RESOLUTION, entity, minute, pack(values)))
        self._db.executemany("INSERT OR REPLACE INTO points(res, entity, ts, data) VALUES (?,?,?,?)", params)
        return len(params)

    def _seal(self, res: int, upto: int) -> None:
        """Seal the oldest span of ``res`` rows that ended by ``upto`` (rolled up) into chunks.

        At most ``SEAL_BATCH`` entities per call, so no round does much of it; a store behind
        (a daemon that was down) catches up a little every round.
        """
        span = CHUNK_S[res]
        key = f"sealed_{res}"
        known = self._meta(key)
        if known is None:  # first time: from the oldest open row
            oldest = self._db.execute("SELECT min(ts) FROM points WHERE res=?", (res,)).fetchone()[0]
            if oldest is None:
                return
            known = str(int(oldest) // span * span)
        start = int(known)
        if start + span > upto:
            return
        progress = f"sealing_{res}"  # the last entity sealed in this span: SEAL_BATCH entities per call
        after = int(self._meta(progress) or 0)
        batch = self._db.execute(
            "SELECT id, kind FROM entities WHERE id > ? ORDER BY id LIMIT ?", (after, SEAL_BATCH)
        ).fetchall()
        for entity, kind in batch:
            if kind in KINDS:
                self._seal_entity(res, int(entity), len(KINDS[kind]), start)
        if len(batch) == SEAL_BATCH:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (progress, str(batch[-1][0])))
            return
        self._db.execute("DELETE FROM meta WHERE key=?", (progress,))
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, str(start + span)))

    def _seal_entity(self, res: int, entity: int, width: int, start: int) -> None:
        """Move one entity's rows of the span at ``start`` into its chunk."""
        span = CHUNK_S[res]
        rows = self._db.execute(
            "SELECT ts, data FROM points WHERE res=? AND entity=? AND ts>=? AND ts<? ORDER BY ts",
            (res, entity, start, start + span),
        ).fetchall()
        if not rows:
            return
        samples: list[tuple[int, Sequence[float | None]]] = [
            (int(ts), struct.unpack(f"<{len(data) // 4}f", data)) for ts, data in rows
        ]
        old = self._db.execute(
            "SELECT data FROM chunks WHERE res=? AND entity=? AND start=?", (res, entity, start)
        ).fetchone()
        if old is not None:  # rows that arrived after the span was sealed once
            kept: dict[int, Sequence[float | None]] = dict(unpack_chunk(old[0], start, res, width))
            samples = sorted({**kept, **dict(samples)}.items())
        self._db.execute(
            "INSERT OR REPLACE INTO chunks(res, entity, start, data) VALUES (?,?,?,?)",
            (res, entity, start, pack_chunk(start, res, samples, width)),
        )
        self._db.execute(
            "DELETE FROM points WHERE res=? AND entity=? AND ts>=? AND ts<?", (res, entity, start, start + span)
        )

    def _prune(self, now: float) -> None:
        raw_cut = int(now - self.raw_retention_s)
        rollup_cut = int(now - self.rollup_retention_s)
        for (entity,) in self._db.execute("SELECT id FROM entities").fetchall():
            self._db.execute("DELETE FROM points WHERE res=? AND entity=? AND ts<?", (RAW_RESOLUTION, entity, raw_cut))
            self._db.execute(
                "DELETE FROM points WHERE res=? AND entity=? AND ts<?", (ROLLUP_RESOLUTION, entity, rollup_cut)
            )
            self._db.execute("DELETE FROM hist WHERE entity=? AND ts<?", (entity, raw_cut))
            for res, cut in ((RAW_RESOLUTION, raw_cut), (ROLLUP_RESOLUTION, rollup_cut)):  # whole chunks only
                self._db.execute(
                    "DELETE FROM chunks WHERE res=? AND entity=? AND start<?", (res, entity, cut - CHUNK_S[res])
                )
        gone = [r[0] for r in self._db.execute("SELECT id FROM entities WHERE last_seen < ?", (rollup_cut,))]
        for entity in gone:
            for res in (RAW_RESOLUTION, ROLLUP_RESOLUTION):
                self._db.execute("DELETE FROM points WHERE res=? AND entity=?", (res, entity))
                self._db.execute("DELETE FROM chunks WHERE res=? AND entity=?", (res, entity))
            self._db.execute("DELETE FROM entities WHERE id=?", (entity,))
        if gone:
            self._ids = {k: v for k, v in self._ids.items() if v not in set(gone)}
            for entity in gone:
                self._seen.pop(entity, None)


class _Transaction:
    """BEGIN ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
