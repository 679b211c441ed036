"""Active and recent alerts in SQLite (``alerts.db``), and what became of their notifications.

One row per alert from firing to resolved: ``open`` inserts it when a rule fires, ``resolve``
closes it. ``listing`` is what ``slipstream alerts --json`` prints: every firing alert, then the
resolved ones of the last ``recent_s`` seconds. ``prune`` keeps resolved alerts 30 days and at
most 5000 rows, so the file stays small whatever flaps.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipstream.alerts.engine import Transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule TEXT NOT NULL,
    entity TEXT NOT NULL,
    service TEXT NOT NULL,
    state TEXT NOT NULL,              -- firing | resolved
    value REAL,
    threshold REAL NOT NULL,
    message TEXT NOT NULL,
    started_at REAL NOT NULL,
    resolved_at REAL,
    deliveries TEXT NOT NULL DEFAULT '{}'  -- JSON {channel: "ok" | "failed: why" | "pending"}
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state, resolved_at);
"""
KEEP_RESOLVED_S = 30 * 86400
MAX_ROWS = 5000


@dataclass(frozen=True)
class AlertRecord:
    """One alert as stored."""

    id: int
    rule: str
    entity: str
    service: str
    state: str
    value: float | None
    threshold: float
    message: str
    started_at: float
    resolved_at: float | None
    deliveries: dict[str, str]

    @property
    def since(self) -> float:
        """When the current state began: fired, or resolved."""
        return self.resolved_at if self.resolved_at is not None else self.started_at

    def public(self) -> dict[str, Any]:
        """The JSON shape of ``slipstream alerts --json``."""
        return {
            "id": self.id,
            "rule": self.rule,
            "service": self.service,
            "entity": self.entity,
            "state": self.state,
            "since": self.since,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "started_at": self.started_at,
            "resolved_at": self.resolved_at,
            "deliveries": self.deliveries,
        }


class AlertStore:
    """The alerts file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def open(self, t: Transition) -> int:
        """Record a firing alert; its id."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO alerts(rule, entity, service, state, value, threshold, message, started_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (t.rule, t.entity, t.service, "firing", t.value, t.threshold, t.message, t.started_at),
            )
            return int(cur.lastrowid or 0)

    def resolve(self, t: Transition) -> int | None:
        """Close the firing alert of ``t``'s rule and entity; its id (None when none was open)."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM alerts WHERE rule=? AND entity=? AND state='firing' ORDER BY id DESC LIMIT 1",
                (t.rule, t.entity),
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE alerts SET state='resolved', resolved_at=?, value=?, message=? WHERE id=?",
                (t.at, t.value, t.message, row["id"]),
            )
            return int(row["id"])

    def set_delivery(self, alert_id: int, channel: str, outcome: str) -> None:
        """Note what became of a notification of ``alert_id`` on ``channel``."""
        with self._lock:
            row = self._db.execute("SELECT deliveries FROM alerts WHERE id=?", (alert_id,)).fetchone()
            if row is None:
                return
            deliveries = json.loads(row["deliveries"])
            deliveries[channel] = outcome
            self._db.execute(
                "UPDATE alerts SET deliveries=? WHERE id=?", (json.dumps(deliveries, sort_keys=True), alert_id)
            )

    def firing(self) -> list[AlertRecord]:
        """Every firing alert, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM alerts WHERE state='firing' ORDER BY started_at, id").fetchall()
        return [_record(r) for r in rows]

    def listing(self, now: float, recent_s: float = 86400, limit: int = 200) -> list[AlertRecord]:
        """Firing alerts, then alerts resolved within ``recent_s`` (newest first), at most ``limit``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM alerts WHERE state='firing' OR resolved_at >= ? "
                "ORDER BY state='resolved', coalesce(resolved_at, started_at) DESC, id DESC LIMIT ?",
                (now - recent_s, limit),
            ).fetchall()
        return [_record(r) for r in rows]

    def prune(self, now: float) -> int:
        """Forget resolved alerts older than 30 days, and the oldest resolved beyond 5000 rows."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM alerts WHERE state='resolved' AND resolved_at < ?", (now - KEEP_RESOLVED_S,)
            )
            removed = cur.rowcount
            cur = self._db.execute(
                "DELETE FROM alerts WHERE state='resolved' AND id NOT IN "
                "(SELECT id FROM alerts ORDER BY id DESC LIMIT ?)",
                (MAX_ROWS,),
            )
            return removed + cur.rowcount


def _record(row: sqlite3.Row) -> AlertRecord:
    return AlertRecord(
        id=int(row["id"]),
        rule=row["rule"],
        entity=row["entity"],
        service=row["service"],
        state=row["state"],
        value=row["value"],
        threshold=float(row["threshold"]),
        message=row["message"],
        started_at=float(row["started_at"]),
        resolved_at=None if row["resolved_at"] is None else float(row["resolved_at"]),
        deliveries=json.loads(row["deliveries"]),
    )
