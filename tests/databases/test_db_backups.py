"""Backups against a real PostgreSQL: every backup taken here is restored and its contents compared."""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import time
from dataclasses import replace

import psycopg
import pytest

from slipstream.databases import BackupFailed, Cluster, DatabaseInfo, DrillFailed
from slipstream.databases.backups import sha256_file
from slipstream.errors import CommandFailed, Conflict, InvalidInput, NotFound


def _sql(info: DatabaseInfo, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(info.connection_string(), autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def _seed(info: DatabaseInfo, rows: int = 500) -> None:
    _sql(info, "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)")
    _sql(info, f"INSERT INTO items (label) SELECT 'item-' || g FROM generate_series(1, {rows}) g")
    _sql(info, "CREATE SCHEMA audit")
    _sql(info, "CREATE TABLE audit.events (at timestamptz DEFAULT now(), what text)")
    _sql(info, "INSERT INTO audit.events (what) VALUES ('seeded'), ('again')")


def _count(info: DatabaseInfo, table: str = "items") -> int:
    return int(str(_sql(info, f"SELECT count(*) FROM {table}")[0][0]))


def test_backup_then_restore_brings_deleted_rows_back(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db)
    backup = cluster.backup(db)
    assert backup.status == "ok" and backup.error is None and backup.kind == "manual"
    assert backup.path.exists() and backup.size_bytes == backup.path.stat().st_size > 0
    assert backup.id.startswith(f"{db.name}-") and backup.id.endswith("-manual")
    assert backup.row_counts == {"public.items": 500, "audit.events": 2}
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert not list(backup.path.parent.glob("*.partial"))
    sidecar = json.loads(backup.path.with_name(f"{backup.id}.json").read_text())
    assert sidecar["sha256"] == sha256_file(backup.path) and sidecar["tables"] == ["audit.events", "public.items"]
    assert db.password not in backup.path.with_name(f"{backup.id}.json").read_text()

    _sql(db, "DELETE FROM items WHERE id > 100")
    _sql(db, "UPDATE items SET label = 'changed'")
    _sql(db, "DROP TABLE audit.events")
    assert _count(db) == 100
    restored = cluster.restore(db, backup)
    assert restored == db
    assert _count(db) == 500
    assert _sql(db, "SELECT label FROM items WHERE id = 1") == [("item-1",)]
    assert _count(db, "audit.events") == 2
    owner = _sql(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'")
    assert owner == [(db.user,)]  # still the app's role: the app can write after a restore
    _sql(db, "INSERT INTO items (label) VALUES ('after restore')")


def test_restore_into_a_new_database(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db, rows=42)
    backup = cluster.backup(db, kind="pre_deploy")
    _sql(db, "TRUNCATE items")
    into = f"copy_{secrets.token_hex(3)}"
    copy = cluster.restore(db, backup, into=into)
    try:
        assert (copy.database, copy.user, copy.port) == (into, db.user, db.port)
        assert _count(copy) == 42 and _count(db) == 0  # the original is untouched
        with pytest.raises(Conflict, match="already exists"):
            cluster.restore(db, backup, into=into)
        with pytest.raises(InvalidInput):
            cluster.restore(db, backup, into="Not-Valid")
    finally:
        cluster.drop_database(copy)


def test_drill_passes_on_a_good_backup(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db, rows=77)
    backup = cluster.backup(db, kind="scheduled")
    report = cluster.drill(db, backup)
    assert report.ok, report.message
    assert report.tables == {"public.items": (77, 77), "audit.events": (2, 2)}
    scratch = _admin_sql(cluster, "SELECT datname FROM pg_database WHERE datname LIKE 'slipstream_drill_%'")
    assert scratch == []  # dropped afterwards


def _admin_sql(cluster: Cluster, query: str) -> list[tuple[object, ...]]:
    admin = cluster.admin_endpoint()
    with psycopg.connect(
        host=admin.host, port=admin.port, user=admin.user, password=admin.password, dbname="postgres", autocommit=True
    ) as conn:
        return conn.execute(query).fetchall()


def test_drill_fails_loudly_on_a_truncated_archive(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db)
    backup = cluster.backup(db)
    size = backup.path.stat().st_size
    with backup.path.open("r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(DrillFailed, match="damaged") as caught:
        cluster.drill(db, backup)
    assert not caught.value.report.ok
    with pytest.raises(InvalidInput, match="damaged"):
        cluster.restore(db, backup)
    assert _count(db) == 500  # the refused restore changed nothing


def test_drill_fails_when_the_archive_itself_does_not_restore(cluster: Cluster, db: DatabaseInfo) -> None:
    """Damage that happened before the checksum was recorded: pg_restore itself must catch it."""
    _seed(db)
    backup = cluster.backup(db)
    data = backup.path.read_bytes()
    backup.path.write_bytes(data[: len(data) * 2 // 3])
    forged = replace(backup, size_bytes=backup.path.stat().st_size, sha256=sha256_file(backup.path))
    with pytest.raises(DrillFailed, match="does not restore") as caught:
        cluster.drill(db, forged)
    assert not caught.value.report.ok
    assert _admin_sql(cluster, "SELECT datname FROM pg_database WHERE datname LIKE 'slipstream_drill_%'") == []


def test_a_failing_restore_leaves_the_database_as_it_was(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db)
    backup = cluster.backup(db)
    _sql(db, "DELETE FROM items WHERE id > 100")
    data = backup.path.read_bytes()
    backup.path.write_bytes(data[: len(data) * 2 // 3])  # the TOC (with its DROPs) survives, the data does not
    forged = replace(backup, size_bytes=backup.path.stat().st_size, sha256=sha256_file(backup.path))
    with pytest.raises(CommandFailed, match="failed and was rolled back: pg_restore failed: ") as caught:
        cluster.restore(db, forged)
    assert "Command was" not in caught.value.message
    assert _count(db) == 100 and _count(db, "audit.events") == 2


def test_drill_detects_rows_that_differ_from_the_record(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db, rows=10)
    backup = cluster.backup(db)
    lying = replace(backup, row_counts={"public.items": 11, "audit.events": 2})
    with pytest.raises(DrillFailed, match=r"public.items \(backup 11, restored 10\)") as caught:
        cluster.drill(db, lying)
    assert caught.value.report.tables["public.items"] == (11, 10)


def test_row_counts_and_archive_come_from_one_snapshot(cluster: Cluster, db: DatabaseInfo) -> None:
    """Rows inserted while the backup runs must be in both the counts and the archive, or in neither."""
    _seed(db, rows=1)
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(db.connection_string(), autocommit=True) as conn:
            for _ in range(100_000):  # bounded; stopped as soon as the backup returns
                if stop.is_set():
                    return
                conn.execute("INSERT INTO items (label) VALUES ('concurrent')")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3000):  # bounded poll: the writer is busy before the backup starts
            if _count(db) >= 50:
                break
            time.sleep(0.01)
        assert _count(db) >= 50, "the writer thread never got going"
        backup = cluster.backup(db)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert cluster.drill(db, backup).ok
    assert backup.row_counts is not None and backup.row_counts["public.items"] < _count(db)


def test_failed_backup_is_recorded_and_raised(cluster: Cluster) -> None:
    info = cluster.ensure_database(f"gone{secrets.token_hex(3)}", password="pw-gone")
    cluster.drop_database(info)
    with pytest.raises(BackupFailed, match=f"backup of {info.name} failed") as caught:
        cluster.backup(info, kind="scheduled")
    failed = caught.value.backup
    assert failed.status == "failed" and failed.error and "does not exist" in failed.error
    assert not failed.path.exists() and not list(failed.path.parent.glob("*.dump*"))
    listed = cluster.backups(info.name)
    assert [(b.id, b.status) for b in listed] == [(failed.id, "failed")]
    with pytest.raises(InvalidInput, match="failed when it was taken"):
        cluster.restore(info, listed[0])


def test_backups_listing_and_prune_keeps_the_newest(cluster: Cluster, db: DatabaseInfo) -> None:
    _seed(db, rows=5)
    manual = cluster.backup(db, kind="manual")
    scheduled = [cluster.backup(db, kind="scheduled") for _ in range(4)]
    assert len({b.id for b in scheduled}) == 4  # same-second backups get distinct ids
    listed = cluster.backups(db.name)
    assert [b.id for b in listed] == [b.id for b in reversed([manual, *scheduled])]  # newest first
    deleted = cluster.prune(db.name, keep=2)
    assert {b.id for b in deleted} == {scheduled[0].id, scheduled[1].id}
    assert not scheduled[0].path.exists() and not scheduled[0].path.with_name(f"{scheduled[0].id}.json").exists()
    assert [b.id for b in cluster.backups(db.name)] == [scheduled[3].id, scheduled[2].id, manual.id]
    assert cluster.prune(db.name, keep=2) == []
    assert cluster.store.get(db.name, manual.id) == manual
    with pytest.raises(NotFound):
        cluster.store.get(db.name, "nope")
    with pytest.raises(InvalidInput, match="unknown backup kind"):
        cluster.backup(db, kind="hourly")


def test_backup_directory_is_private(cluster: Cluster, db: DatabaseInfo) -> None:
    backup = cluster.backup(db)
    assert stat.S_IMODE(os.stat(backup.path.parent).st_mode) == 0o700
    assert stat.S_IMODE(backup.path.with_name(f"{backup.id}.json").stat().st_mode) == 0o600
