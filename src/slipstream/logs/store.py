"""The log store: one SQLite file (WAL) of compressed blocks of lines, indexed for ``--grep``.

    blocks(first PK, n, ts0, ts1, service, stream, deploy, instance, build, max_level, fields, data)
    epochs, words_<k>                          the word index (index.py, grep.py)
    files(path PK, source, dev, ino, offset)   where the tailer is in each file
    meta(key PK, value)                        schema version, the next sequence number

Life of a line: the tailer (or ``LogPipeline.emit``) hands a :class:`Batch` to ``append_batches``,
which masks its text (secrets never reach the file), compresses it, indexes its words and saves the
tailer's file offsets, all in one transaction: after a crash a file is read again from the offset
saved with the last block that came from it, so no line is lost or stored twice. ``search`` and
``follow`` read blocks newest or oldest first through the indexes and decode only candidate blocks;
nothing is read whole. ``prune`` deletes whole blocks, oldest first, by age and then by size, and
drops the index epochs whose blocks are all gone.

One writer (the pipeline's thread; a lock guards the rare other caller); readers use a small pool
of their own connections, so searches never wait for ingest (WAL).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slipstream.logs.block import MAX_LINES, Batch, Decoded, decode, encode
from slipstream.logs.grep import lines_to_check, matcher, terms_for, word_docs
from slipstream.logs.index import WordIndex, condition
from slipstream.logs.mask import LogMasker
from slipstream.logs.model import Level, LogLine, LogQuery, LogsError, Source, Stream
from slipstream.logs.parse import parse_json

SCHEMA_VERSION = 1  # also versions the index docs of ``grep.word_docs``
PRUNE_CHUNK = 256  # blocks deleted per transaction
READERS = 4  # reader connections kept open
EPOCHS = 16  # index epochs in the size limit: an epoch is dropped whole (index.py)
EPOCHS_BY_AGE = 7  # ... and in the age limit (a day for 7 days)
WAL_LIMIT = 16 << 20  # the write-ahead log is truncated to this after a checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(
    first INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    ts0 REAL NOT NULL,
    ts1 REAL NOT NULL,
    service TEXT NOT NULL,
    stream TEXT NOT NULL,
    deploy INTEGER,
    instance TEXT,
    build INTEGER,
    max_level INTEGER NOT NULL,
    fields TEXT,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_service ON blocks(service, first);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, source TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Retention:
    """How long and how much the store keeps (defaults: 7 days, 1 GiB)."""

    max_age_s: float = 7 * 86400.0
    max_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if self.max_age_s <= 0:
            raise LogsError(f"log retention: the age limit must be positive, got {self.max_age_s} s")
        if self.max_bytes < 1 << 20:
            raise LogsError(f"log retention: the size limit must be at least 1 MiB, got {self.max_bytes} bytes")


@dataclass(frozen=True)
class FileOffset:
    """Where the tailer stands in one file: the file's identity and the bytes consumed."""

    path: str
    source: Source
    dev: int
    ino: int
    offset: int


@dataclass(frozen=True)
class Stored:
    """A block as written: its first sequence number, its source and its masked lines."""

    first: int
    batch: Batch
    messages: list[str]

    def lines(self) -> list[LogLine]:
        b, s = self.batch, self.batch.source
        out = []
        for i, m in enumerate(self.messages):
            level = Level(b.levels[i]) if b.levels[i] else None
            out.append(
                LogLine(
                    b.ts[i],
                    s.service,
                    s.stream,
                    m,
                    s.deploy_id,
                    s.instance,
                    level,
                    s.build_id,
                    b.fields.get(i),
                    self.first + i,
                )
            )
        return out


@dataclass(frozen=True)
class PruneResult:
    blocks: int
    lines: int
    file_bytes: int


class LogStore:
    """Blocks of lines in SQLite; see the module docstring for the life of a line."""

    def __init__(
        self,
        path: Path,
        masker: LogMasker | None = None,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.masker = masker if masker is not None else LogMasker()
        self.retention = retention if retention is not None else Retention()
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._closed = False
        self._db = self._connect()
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_LIMIT // 4096}")  # fewer, larger checkpoints
        self._db.executescript(_SCHEMA)
        self._index = WordIndex(
            self._db, max(self.retention.max_bytes // EPOCHS, 1 << 20), self.retention.max_age_s / EPOCHS_BY_AGE
        )
        version = self._meta("schema")
        if version is None:
            self._set_meta("schema", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise LogsError(f"{path} has log store schema {version}; this slipstream reads {SCHEMA_VERSION}")
        row = self._db.execute("SELECT first + n FROM blocks ORDER BY first DESC LIMIT 1").fetchone()
        self._next = max(int(row[0]) if row else 1, int(self._meta("next_seq") or 1))

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            if self._closed:
                raise LogsError("the log store is closed")
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
        conn.execute("BEGIN")  # one snapshot for the whole read: index epochs and blocks agree
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
            with self._pool_lock:
                keep = not self._closed and len(self._pool) < READERS
                if keep:
                    self._pool.append(conn)
            if not keep:
                conn.close()

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()
        with self._write_lock:
            self._db.close()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- writing ----------------------------------------------------------------------------
    def append(self, lines: Iterable[LogLine]) -> list[Stored]:
        """Store lines (grouped into blocks by source; a message's own newlines split it)."""
        return self.append_batches(Batch.of(lines))

    def append_batches(self, batches: Sequence[Batch], offsets: Sequence[FileOffset] = ()) -> list[Stored]:
        """Mask, compress and index ``batches`` and save ``offsets``, in one transaction."""
        pieces = [p for b in batches if len(b) for p in b.split()]
        encoded = []
        for piece in pieces:
            messages, text, words = self._masked(piece)
            if piece.fields and self.masker and self.masker.found(_strings_in(piece.fields)):
                piece.fields = {k: _mask_fields(self.masker, v) for k, v in piece.fields.items()}
            payload, fields_json = encode(piece, text)
            encoded.append((piece, messages, words, payload, fields_json))
        rows: list[tuple[Any, ...]] = []
        docs: list[tuple[int, list[str]]] = []
        out: list[Stored] = []
        with self._write_lock:  # only numbering and writing need the lock
            first = self._next
            for piece, messages, words, payload, fields_json in encoded:
                s = piece.source
                rows.append(
                    (first, len(piece), min(piece.ts), max(piece.ts), s.service, s.stream.value, s.deploy_id,
                     s.instance, s.build_id, max(piece.levels), fields_json, payload)
                )  # fmt: skip
                docs.append((first, words))
                out.append(Stored(first, piece, messages))
                first += len(piece)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._index.add(docs, sum(len(r[-1]) for r in rows), self.clock())
                self._db.executemany(
                    "INSERT OR REPLACE INTO files(path, source, dev, ino, offset) VALUES (?, ?, ?, ?, ?)",
                    [(o.path, o.source.to_json(), o.dev, o.ino, o.offset) for o in offsets],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._index.reload()
                raise
            self._next = first
        return out

    def _masked(self, batch: Batch) -> tuple[list[str], str, list[str]]:
        """The batch's messages, their joined text and its index docs, secrets masked."""
        text = "\n".join(batch.messages)
        masked = self.masker.mask(text)
        if masked is text:
            return batch.messages, text, word_docs(text)
        messages = masked.split("\n")
        if len(messages) != len(batch.messages):  # a value spanning lines was masked: mask each
            messages = [self.masker.mask(m) for m in batch.messages]
            masked = "\n".join(messages)
        batch.messages = messages
        return messages, masked, word_docs(masked)

    # -- file offsets -----------------------------------------------------------------------
    def offsets(self) -> dict[str, FileOffset]:
        """The saved position of every file the tailer follows."""
        rows = self._db.execute("SELECT path, source, dev, ino, offset FROM files").fetchall()
        return {p: FileOffset(p, Source.from_json(s), d, i, o) for p, s, d, i, o in rows}

    def forget(self, path: str) -> None:
        """Drop a file's saved position (the tailer no longer follows it)."""
        with self._write_lock:
            self._db.execute("DELETE FROM files WHERE path = ?", (path,))

    # -- reading ----------------------------------------------------------------------------
    def last_seq(self) -> int:
        """The sequence number of the newest stored line (0 when none ever was)."""
        return self._next - 1

    def search(self, query: LogQuery) -> list[LogLine]:
        """The lines ``query`` asks for, oldest first (see :class:`LogQuery` for which)."""
        with self._reader() as conn:
            return self._collect(conn, query)

    def follow(self, query: LogQuery, after: int) -> tuple[list[LogLine], int]:
        """Lines matching ``query`` stored after cursor ``after``, oldest first, and the cursor to
        pass next time (it moves past lines that did not match, so nothing is scanned twice)."""
        with self._reader() as conn:
            row = conn.execute("SELECT first + n - 1 FROM blocks ORDER BY first DESC LIMIT 1").fetchone()
            last = int(row[0]) if row else 0
            if last <= after:
                return [], after
            lines = self._collect(conn, replace(query, after=after, before=last + 1))
        if len(lines) == query.limit and lines[-1].seq is not None:
            return lines, lines[-1].seq
        return lines, last

    def iter_search(self, query: LogQuery, newest_first: bool = True) -> Iterator[LogLine]:
        """Every line matching ``query`` (``limit`` ignored), streamed block by block. It holds one
        read snapshot while it is iterated (the log cannot be checkpointed past it): consume it
        promptly; to tail, poll ``follow``."""
        with self._reader() as conn, contextlib.closing(self._scan(conn, query, not newest_first)) as lines:
            yield from lines

    def _collect(self, conn: sqlite3.Connection, query: LogQuery) -> list[LogLine]:
        ascending = query.after is not None
        out: list[LogLine] = []
        with contextlib.closing(self._scan(conn, query, ascending)) as lines:
            for line in lines:
                out.append(line)
                if len(out) >= query.limit:
                    break
        if not ascending:
            out.reverse()
        return out

    def _scan(self, conn: sqlite3.Connection, q: LogQuery, ascending: bool) -> Generator[LogLine, None, None]:
        where, args = _where(q)
        terms = terms_for(q.grep) if q.grep is not None else None
        if terms is not None:
            sql, more = condition(conn, terms)
            where.append(sql)
            args += more
        # the blocks' numbers first, then each block by its key: ordering whole rows would copy
        # every candidate's data into a sort (a common --grep word: 16 ms instead of 0.6 ms)
        sql = (
            "SELECT first FROM blocks"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY first {'ASC' if ascending else 'DESC'}"
        )
        cursor = conn.execute(sql, args)
        rows = (
            conn.execute(
                "SELECT first, n, service, stream, deploy, instance, build, fields, data FROM blocks WHERE first = ?",
                (first,),
            ).fetchone()
            for (first,) in cursor
        )
        try:
            yield from self._lines(rows, q, ascending)
        finally:
            cursor.close()

    def _lines(self, rows: Iterable[tuple[Any, ...]], q: LogQuery, ascending: bool) -> Iterator[LogLine]:
        test = matcher(q.grep) if q.grep is not None else None
        min_level = int(q.level) if q.level is not None else 0
        lo = q.after + 1 if q.after is not None else None
        hi = q.before - 1 if q.before is not None else None
        for first, n, service, stream, deploy, instance, build, fields, data in rows:
            source = Source(service, Stream(stream), deploy, instance, build)
            block = decode(first, n, source, data, fields)
            check = test
            order: Sequence[int] = range(n)
            if q.grep is not None:
                candidates = lines_to_check(q.grep, block.text)
                if candidates is not None:
                    order, check = candidates, None  # the lines holding a match
            if not ascending:
                order = order[::-1]
            if not order:
                continue  # no line to read: the block's text is not split
            messages = block.messages
            for i in order:
                seq = first + i
                if (lo is not None and seq < lo) or (hi is not None and seq > hi):
                    continue
                if min_level and block.levels[i] < min_level:
                    continue
                ts = block.ts[i]
                if (q.since is not None and ts < q.since) or (q.until is not None and ts > q.until):
                    continue
                message = messages[i]
                if check is not None and not check(message):
                    continue
                yield _with_fields(block, i, message)

    # -- retention --------------------------------------------------------------------------
    def prune(self, now: float | None = None) -> PruneResult:
        """Delete the oldest blocks: those older than the age limit, then more until the data
        fits in 90% of the size limit; drop the index epochs left without blocks; give free pages
        back to the file system."""
        cutoff = (now if now is not None else self.clock()) - self.retention.max_age_s
        blocks = lines = 0
        while True:  # by age
            n, k = self._delete("WHERE ts1 < ? ORDER BY first LIMIT ?", (cutoff, PRUNE_CHUNK))
            blocks, lines = blocks + n, lines + k
            if n < PRUNE_CHUNK:
                break
        target = self.retention.max_bytes * 0.9
        while (used := self.used_bytes()) > target:  # by size
            count = self._db.execute("SELECT count(*) FROM blocks").fetchone()[0]
            if not count:
                break
            chunk = min(PRUNE_CHUNK, max(1, int((used - target) / (used / count)) + 1))
            n, k = self._delete("ORDER BY first LIMIT ?", (chunk,))
            blocks, lines = blocks + n, lines + k
        if blocks:
            with self._write_lock:
                self._set_meta("next_seq", str(self._next))
                self._db.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return PruneResult(blocks, lines, self.file_bytes())

    def _delete(self, which: str, args: tuple[Any, ...]) -> tuple[int, int]:
        """Delete the blocks ``SELECT ... FROM blocks <which>`` picks, then the index epochs that
        indexed only deleted blocks; (blocks, lines) deleted."""
        with self._write_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                picked = self._db.execute(f"SELECT first, n FROM blocks {which}", args).fetchall()
                if picked:
                    self._db.executemany("DELETE FROM blocks WHERE first = ?", [(first,) for first, _ in picked])
                    oldest = self._db.execute("SELECT min(first) FROM blocks").fetchone()[0]
                    self._index.drop_before(oldest if oldest is not None else self._next)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(picked), sum(n for _, n in picked)

    def used_bytes(self) -> int:
        """Bytes of the file that hold data (pages not on the free list)."""
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def file_bytes(self) -> int:
        """The store's size on disk: the database file and its write-ahead log."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += Path(str(self.path) + suffix).stat().st_size
            except FileNotFoundError:
                pass
        return total

    def stats(self) -> dict[str, float | int | None]:
        """Blocks, lines, the oldest line's time and bytes used, for the API and the bench."""
        blocks, lines, oldest = self._db.execute("SELECT count(*), sum(n), min(ts0) FROM blocks").fetchone()
        return {
            "blocks": blocks,
            "lines": lines or 0,
            "oldest": oldest,
            "used_bytes": self.used_bytes(),
            "file_bytes": self.file_bytes(),
        }


def _where(q: LogQuery) -> tuple[list[str], list[object]]:
    """The SQL conditions on blocks that ``q`` implies (lines are then checked one by one)."""
    where: list[str] = []
    args: list[object] = []
    for column, value in (
        ("service", q.service),
        ("deploy", q.deploy_id),
        ("instance", q.instance),
        ("build", q.build_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.streams is not None:
        where.append(f"stream IN ({','.join('?' * len(q.streams))})")
        args += sorted(s.value for s in q.streams)
    if q.since is not None:
        where.append("ts1 >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("ts0 <= ?")
        args.append(q.until)
    if q.level is not None:
        where.append("max_level >= ?")
        args.append(int(q.level))
    if q.before is not None:
        where.append("first < ?")
        args.append(q.before)
    if q.after is not None:
        where.append("first > ? AND first + n > ?")
        args += [q.after - MAX_LINES, q.after + 1]
    return where, args


def _with_fields(block: Decoded, i: int, message: str) -> LogLine:
    line = block.line(i, message)
    if line.fields is None and message.startswith("{"):
        parsed = parse_json(message)
        if parsed is not None:
            return replace(line, fields=parsed)
    return line


def _strings_in(fields: Any) -> str:
    """Every string in ``fields`` (nested dicts and lists too), NUL-separated: one text to look for
    secrets in before masking field by field (masking each of an access line's eight strings alone
    cost ~100 us per line with 20 secrets; looking in one text per block, ~2 us)."""
    out: list[str] = []
    todo: list[Any] = [fields]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
    return "\0".join(out)


def _mask_fields(masker: LogMasker, fields: Any) -> Any:
    """Fields with every string in them masked."""
    if isinstance(fields, str):
        return masker.mask(fields)
    if isinstance(fields, dict):
        return {k: _mask_fields(masker, v) for k, v in fields.items()}
    if isinstance(fields, list):
        return [_mask_fields(masker, v) for v in fields]
    return fields
