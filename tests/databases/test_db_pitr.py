"""Point-in-time recovery against the real cluster: WAL archiving, base backups, restore to a time."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import psycopg
import pytest

from slipstream.databases import Cluster, DatabaseInfo
from slipstream.databases.commands import archive_settings, recovery_settings
from slipstream.databases.pitr import BaseBackup, choose_base, parse_target_time
from slipstream.errors import Conflict, InvalidInput, NotFound
from tests.databases.conftest import log_tail


def rows(cluster: Cluster, info: DatabaseInfo, database: str | None = None) -> list[str]:
    with psycopg.connect(
        host=info.host, port=info.port, user=info.user, password=info.password, dbname=database or info.database
    ) as conn:
        return [r[0] for r in conn.execute("SELECT t FROM items ORDER BY id")]


def write(info: DatabaseInfo, sql: str) -> None:
    with psycopg.connect(
        host=info.host, port=info.port, user=info.user, password=info.password, dbname=info.database, autocommit=True
    ) as conn:
        conn.execute(sql)


def test_restore_to_a_time_between_two_writes(cluster: Cluster, db: DatabaseInfo) -> None:
    write(db, "CREATE TABLE items (id serial PRIMARY KEY, t text); INSERT INTO items (t) VALUES ('before base')")
    base = cluster.base_backup()
    assert base.start_wal and base.size_bytes > 1_000_000 and base in cluster.base_backups()
    write(db, "INSERT INTO items (t) VALUES ('after base')")
    time.sleep(0.3)
    target = dt.datetime.now(dt.UTC)
    time.sleep(0.3)
    write(db, "DELETE FROM items")  # the mistake to recover from
    assert rows(cluster, db) == []
    try:
        restored = cluster.restore_to_time(db, target, into=f"{db.database}_pitr")
    except Exception:
        print(log_tail(cluster))
        raise
    assert restored.database == f"{db.database}_pitr"
    assert rows(cluster, db, restored.database) == ["before base", "after base"]  # as it was at target
    assert rows(cluster, db) == []  # the live database is untouched
    with pytest.raises(Conflict, match="already exists"):
        cluster.restore_to_time(db, target, into=restored.database)
    with psycopg.connect(
        **{
            "host": db.host,
            "port": db.port,
            "user": cluster.admin_endpoint().user,
            "password": cluster.admin_endpoint().password,
            "dbname": "postgres",
        },
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE "{restored.database}"')
    # nothing is left behind but the base backup and the archive
    leftovers = [p.name for p in cluster._server.root.iterdir() if p.name.startswith("pitr-")]  # type: ignore[union-attr]
    assert leftovers == []


def test_times_outside_the_window_are_refused_clearly(cluster: Cluster, db: DatabaseInfo) -> None:
    with pytest.raises(InvalidInput, match="in the future"):
        cluster.restore_to_time(db, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), into="x_future")
    with pytest.raises(NotFound, match="no base backup finished before 2001"):
        cluster.restore_to_time(db, dt.datetime(2001, 1, 1, tzinfo=dt.UTC), into="x_past")


def test_prune_keeps_the_newest_and_the_wal_they_need(cluster: Cluster) -> None:
    first = cluster.base_backup()
    second = cluster.base_backup()
    wal_dir = cluster._server.wal_dir  # type: ignore[union-attr]
    before = sorted(p.name for p in wal_dir.iterdir() if len(p.name) == 24)
    gone = cluster.prune_base_backups(keep=1)
    assert first.id in {b.id for b in gone} and [b.id for b in cluster.base_backups()] == [second.id]
    after = sorted(p.name for p in wal_dir.iterdir() if len(p.name) == 24)
    assert after and all(name >= second.start_wal for name in after)
    assert len(after) < len(before)


def test_pure_parts() -> None:
    assert parse_target_time("2026-11-23T19:50:00Z") == dt.datetime(2026, 11, 23, 19, 50, tzinfo=dt.UTC)
    assert parse_target_time("2026-11-23 20:50:00+01:00").astimezone(dt.UTC).hour == 19
    assert parse_target_time("2026-11-23 19:50").tzinfo == dt.UTC
    with pytest.raises(InvalidInput, match="not a time"):
        parse_target_time("yesterday")
    a = BaseBackup("a", Path("/a"), 0, 100, "w", 1)
    b = BaseBackup("b", Path("/b"), 150, 200, "w", 1)
    at = dt.datetime.fromtimestamp
    assert choose_base([a, b], at(150, dt.UTC)) == a
    assert choose_base([a, b], at(250, dt.UTC)) == b
    assert choose_base([a, b], at(50, dt.UTC)) is None
    assert "archive_mode = on" in archive_settings(Path("/x/wal"))
    with pytest.raises(InvalidInput):
        archive_settings(Path("/x y/wal"))
    lines = recovery_settings(Path("/x/wal"), at(0, dt.UTC))
    assert "recovery_target_time = '1970-01-01 00:00:00.000000+00'" in lines
