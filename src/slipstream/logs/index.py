"""The word index of the stored blocks: one FTS5 table per epoch, so retention drops them whole.

    epochs(k PK, first, created)    epoch k indexes the blocks from seq ``first`` to the next epoch's
    words_<k>                       FTS5 (trigram, detail=none, contentless): rowid = block first
                                    * PARTS + part, text = that part of the block's words (grep.py)

Why epochs: a contentless FTS5 table forgets a row only when given its words again (recomputing
them cost ~14 µs per line, as much as storing the line did) and keeps the deletions as extra
entries until a merge, so deleting blocks made the index grow before it shrank. Instead a new
epoch (table) starts when the current one indexes ``epoch_bytes`` of block data or is
``epoch_age_s`` old, and an epoch's table is dropped once retention has deleted all its blocks.
Until then the index still names deleted blocks of the oldest epoch: harmless, searches join with
``blocks``; the cost is at most one epoch of extra index.

Writes happen in the store's transaction on its connection; ``condition`` reads the epochs in the
reader's own snapshot, so a search never names a table that another connection dropped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from slipstream.logs.grep import PART_BITS

_CREATE = "CREATE VIRTUAL TABLE words_{k} USING fts5(words, tokenize='trigram', detail=none, content='')"


class WordIndex:
    """Epochs of FTS5 tables on the store's writer connection."""

    def __init__(self, db: sqlite3.Connection, epoch_bytes: int, epoch_age_s: float) -> None:
        self.db = db
        self.epoch_bytes = epoch_bytes
        self.epoch_age_s = epoch_age_s
        db.execute("CREATE TABLE IF NOT EXISTS epochs(k INTEGER PRIMARY KEY, first INTEGER NOT NULL, created REAL)")
        self.reload()

    def reload(self) -> None:
        """Read the current epoch from the file (at start, and after a rolled-back write)."""
        row = self.db.execute("SELECT k, first, created FROM epochs ORDER BY k DESC LIMIT 1").fetchone()
        self._k, self._first, self._created = (int(row[0]), int(row[1]), float(row[2])) if row else (0, 0, 0.0)
        self._bytes = 0
        if row:
            size = self.db.execute("SELECT sum(length(data)) FROM blocks WHERE first >= ?", (self._first,)).fetchone()
            self._bytes = int(size[0] or 0)

    def add(self, docs: Sequence[tuple[int, Sequence[str]]], data_bytes: int, now: float) -> None:
        """Index blocks ``(first, docs)`` (inside the caller's transaction), starting a new epoch
        first when the current one is full or old."""
        if not docs:
            return
        if self._k == 0 or self._bytes >= self.epoch_bytes or now - self._created >= self.epoch_age_s:
            self._k, self._first, self._created, self._bytes = self._k + 1, docs[0][0], now, 0
            self.db.execute(_CREATE.format(k=self._k))
            self.db.execute("INSERT INTO epochs(k, first, created) VALUES (?, ?, ?)", (self._k, self._first, now))
        rows = [((first << PART_BITS) + i, doc) for first, parts in docs for i, doc in enumerate(parts) if doc]
        self.db.executemany(f"INSERT INTO words_{self._k}(rowid, words) VALUES (?, ?)", rows)
        self._bytes += data_bytes

    def drop_before(self, first: int) -> int:
        """Drop the epochs (never the current one) whose blocks all lie before seq ``first``."""
        rows = self.db.execute("SELECT k, first FROM epochs ORDER BY k").fetchall()
        dropped = 0
        for (k, _), (_, next_first) in zip(rows, rows[1:], strict=False):
            if next_first > first:
                break
            self.db.execute(f"DROP TABLE words_{int(k)}")
            self.db.execute("DELETE FROM epochs WHERE k = ?", (k,))
            dropped += 1
        return dropped


def condition(conn: sqlite3.Connection, alternatives: Sequence[Sequence[str]]) -> tuple[str, list[str]]:
    """An SQL condition on ``blocks.first``: some alternative has all its run queries (FTS5 MATCH
    expressions, ``grep.run_query``) matching one index doc of the block, in any epoch."""
    epochs = [int(k) for (k,) in conn.execute("SELECT k FROM epochs ORDER BY k")]
    if not epochs:
        return "0", []
    union = " UNION ALL ".join(f"SELECT rowid >> {PART_BITS} FROM words_{k} WHERE words_{k} MATCH ?" for k in epochs)
    ors: list[str] = []
    args: list[str] = []
    for runs in alternatives:
        ors.append("(" + " AND ".join([f"first IN ({union})"] * len(runs)) + ")")
        args += [q for q in runs for _ in epochs]
    return "(" + " OR ".join(ors) + ")", args
