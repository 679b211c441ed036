"""Backups: ``pg_dump`` archives with a JSON sidecar each, restore, and restore drills.

Lifecycle of one backup (:func:`take_backup`):
  1. reserve ``<backups_dir>/<name>/<id>.dump.partial`` (O_EXCL, 0600): the id is taken;
  2. open a REPEATABLE READ transaction on the database, export its snapshot, count the rows
     of every user table in it, and run ``pg_dump --snapshot`` so archive and counts agree;
  3. read the archive back (``pg_restore --list``), fsync it, record its sha256, rename it to
     ``<id>.dump`` and write ``<id>.json`` (status ``ok``);
  4. on any failure: delete the partial file, write ``<id>.json`` with status ``failed`` and the
     reason, and raise :class:`BackupFailed`. A failed backup is never silent and never leaves a
     file that looks restorable.
Restores and drills first check the archive's sha256 against its sidecar.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from slipstream import runner
from slipstream.databases import admin
from slipstream.databases import sql as q
from slipstream.databases.commands import (
    build_client_env,
    build_pg_dump_argv,
    build_pg_restore_argv,
    build_pg_restore_list_argv,
    parse_client_error,
)
from slipstream.databases.models import Backup, DatabaseInfo, DrillReport, Endpoint, check_identifier, check_kind
from slipstream.errors import CommandFailed, Conflict, InvalidInput, NotFound, SlipstreamError

RESTORE_LOCK_TIMEOUT = "30s"  # a restore waiting on an app's lock fails instead of hanging
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class BackupFailed(CommandFailed):
    """Raised when a backup could not be taken; ``backup`` is the failed record (also on disk)."""

    def __init__(self, message: str, backup: Backup, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.backup = backup


class DrillFailed(CommandFailed):
    """Raised when a restore drill finds a backup unrestorable or different from its sidecar."""

    def __init__(self, report: DrillReport, hint: str | None = None) -> None:
        super().__init__(report.message, hint)
        self.report = report


# Pure parts ----------------------------------------------------------------------------------
def build_backup_id(name: str, kind: str, when: float) -> str:
    """``<name>-<YYYYmmddTHHMMSS>Z-<kind>``: sorts by time within one database."""
    stamp = datetime.fromtimestamp(when, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{kind}"


def parse_sidecar(data: dict[str, object], directory: Path) -> Backup:
    """A :class:`Backup` from a sidecar's JSON object."""
    counts = data.get("row_counts")
    return Backup(
        id=str(data["id"]),
        database=str(data["database"]),
        path=directory / str(data["file"]),
        kind=str(data["kind"]),
        created_at=float(str(data["created_at"])),
        size_bytes=int(str(data.get("size_bytes") or 0)),
        status=str(data["status"]),
        error=str(data["error"]) if data.get("error") else None,
        sha256=str(data["sha256"]) if data.get("sha256") else None,
        row_counts={str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else None,
    )


def render_sidecar(backup: Backup, **extra: object) -> dict[str, object]:
    """The sidecar's JSON object for ``backup`` plus ``extra`` facts (tables, versions, durations)."""
    return {
        "id": backup.id,
        "database": backup.database,
        "file": backup.path.name,
        "kind": backup.kind,
        "created_at": backup.created_at,
        "size_bytes": backup.size_bytes,
        "status": backup.status,
        "error": backup.error,
        "sha256": backup.sha256,
        "format": "pg_dump custom",
        "row_counts": backup.row_counts,
        **extra,
    }


PRE_DEPLOY_MIN_AGE_S = 86400.0  # a pre-deploy snapshot stays at least a day (a failed deploy names it)


def plan_prune(backups: list[Backup], keep: int, now: float | None = None) -> list[Backup]:
    """Which backups retention deletes: per kind, scheduled backups and pre-deploy snapshots past
    the newest ``keep`` good ones of that kind (a pre-deploy snapshot only once it is a day old,
    when ``now`` is given); manual and final backups are never deleted here."""
    if keep < 1:
        raise InvalidInput(f"keep must be at least 1, not {keep}", "keep at least one scheduled backup")
    doomed: list[Backup] = []
    for kind, min_age in (("scheduled", 0.0), ("pre_deploy", PRE_DEPLOY_MIN_AGE_S)):
        if kind == "pre_deploy" and now is None:
            continue
        mine = sorted((b for b in backups if b.kind == kind), key=lambda b: (b.created_at, b.id), reverse=True)
        good = [b for b in mine if b.status == "ok"]
        if len(good) <= keep:
            continue
        oldest_kept = good[keep - 1]
        doomed += [
            b
            for b in mine
            if (b.created_at, b.id) < (oldest_kept.created_at, oldest_kept.id)
            and (now is None or now - b.created_at >= min_age)
        ]
    return doomed


def plan_drill(tables: list[str], expected: dict[str, int] | None, restored: dict[str, int]) -> DrillReport:
    """Compare a sidecar's tables and row counts with a restored copy (-1: table missing on that side).

    Without recorded counts (``expected`` None) only presence is compared: 0 = present, -1 = missing.
    """
    rows: dict[str, tuple[int, int]] = {}
    for name in sorted(set(tables) | set(restored)):
        if expected is None:
            rows[name] = (0 if name in tables else -1, 0 if name in restored else -1)
        else:
            rows[name] = (expected.get(name, -1) if name in tables else -1, restored.get(name, -1))
    bad = [name for name, (want, have) in rows.items() if want != have]
    if bad:
        detail = ", ".join(f"{n} (backup {rows[n][0]}, restored {rows[n][1]})" for n in bad[:5])
        return DrillReport(False, rows, f"restored copy differs from the backup's record: {detail}")
    note = "" if expected is not None else " (row counts were not recorded; compared the table list)"
    return DrillReport(True, rows, f"restored {len(rows)} tables, all match{note}")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_archive(backup: Backup) -> str | None:
    """Why ``backup`` cannot be restored (failed, missing, size or checksum mismatch), or None."""
    if backup.status != "ok":
        return f"backup {backup.id} failed when it was taken: {backup.error}"
    if not backup.path.exists():
        return f"backup {backup.id}: file {backup.path} is missing"
    if backup.path.stat().st_size != backup.size_bytes:
        on_disk = backup.path.stat().st_size
        return f"backup {backup.id} is damaged: {on_disk} bytes on disk, {backup.size_bytes} recorded"
    if backup.sha256 and sha256_file(backup.path) != backup.sha256:
        return f"backup {backup.id} is damaged: its checksum does not match the one recorded"
    return None


# The store -----------------------------------------------------------------------------------
class BackupStore:
    """Backup files under ``root/<name>/``: ``<id>.dump`` archives and ``<id>.json`` sidecars (0600)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def directory(self, name: str) -> Path:
        """The directory of one database's backups."""
        if not _NAME.fullmatch(name):
            raise InvalidInput(
                f"database name {name!r} cannot name a backup directory", "use letters, digits, '.', '_' and '-'"
            )
        return self.root / name

    def reserve(self, name: str, kind: str, when: float) -> tuple[str, Path]:
        """Take a fresh id and create its empty ``.dump.partial`` file (0600)."""
        directory = self.directory(name)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        base = build_backup_id(name, kind, when)
        for n in range(1, 1000):
            backup_id = base if n == 1 else f"{base}-{n}"
            partial = directory / f"{backup_id}.dump.partial"
            if (directory / f"{backup_id}.json").exists():
                continue
            try:
                os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                continue
            return backup_id, partial
        raise Conflict(f"too many backups of {name} in one second", "try again")

    def write_sidecar(self, backup: Backup, **extra: object) -> None:
        """Write ``<id>.json`` atomically (temp file, fsync, rename)."""
        final = backup.path.with_name(f"{backup.id}.json")
        tmp = final.with_name(f".{final.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(render_sidecar(backup, **extra), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)

    def backups(self, name: str) -> list[Backup]:
        """Every backup of ``name``, newest first (an unreadable sidecar shows as a failed backup)."""
        directory = self.directory(name)
        found = []
        for sidecar in directory.glob("*.json") if directory.is_dir() else []:
            try:
                found.append(parse_sidecar(json.loads(sidecar.read_text()), directory))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                found.append(
                    Backup(
                        sidecar.stem,
                        name,
                        directory / f"{sidecar.stem}.dump",
                        "unknown",
                        sidecar.stat().st_mtime,
                        0,
                        "failed",
                        f"unreadable sidecar: {exc}",
                    )
                )
        return sorted(found, key=lambda b: (b.created_at, b.id), reverse=True)

    def get(self, name: str, backup_id: str) -> Backup:
        """One backup by id, or NotFound."""
        for backup in self.backups(name):
            if backup.id == backup_id:
                return backup
        raise NotFound(f"no backup {backup_id!r} of database {name}", f"list them: slipstream db backups {name}")

    def delete(self, backup: Backup) -> None:
        """Remove a backup's archive and sidecar."""
        backup.path.unlink(missing_ok=True)
        backup.path.with_name(f"{backup.id}.json").unlink(missing_ok=True)

    def prune(self, name: str, keep: int) -> list[Backup]:
        """Apply :func:`plan_prune` (now) and return what was deleted."""
        doomed = plan_prune(self.backups(name), keep, now=time.time())
        for backup in doomed:
            self.delete(backup)
        return doomed


# Effects -------------------------------------------------------------------------------------
def take_backup(
    admin_endpoint: Endpoint, bin_dir: Path, store: BackupStore, info: DatabaseInfo, kind: str = "manual"
) -> Backup:
    """Dump ``info``'s database; see the module docstring. Raises :class:`BackupFailed` on any failure."""
    check_kind(kind)
    started = time.time()
    backup_id, partial = store.reserve(info.name, kind, started)
    final = partial.with_name(f"{backup_id}.dump")
    record = Backup(backup_id, info.name, final, kind, started, 0, "failed", None)
    endpoint = admin_endpoint.with_dbname(info.database)
    facts: dict[str, object] = {"db_name": info.database}
    try:
        with admin.connect(endpoint, autocommit=False) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute(q.EXPORT_SNAPSHOT).fetchone()
            assert row is not None
            tables, counts = admin.table_counts(conn)
            facts.update(tables=tables, server_version=admin.server_version_num(conn))
            _run_client(
                build_pg_dump_argv(bin_dir, endpoint, partial, snapshot=str(row[0])),
                build_client_env(endpoint),
                timeout=6 * 3600,
            )
            conn.rollback()
        _run_client(build_pg_restore_list_argv(bin_dir, partial), build_client_env(endpoint), timeout=600)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(partial, 0o600)
        record = replace(
            record, status="ok", size_bytes=partial.stat().st_size, sha256=sha256_file(partial), row_counts=counts
        )
        os.replace(partial, final)
        facts["duration_s"] = round(time.time() - started, 3)
        store.write_sidecar(record, **facts)
        return record
    except (SlipstreamError, psycopg.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)  # e.g. renamed, then the sidecar could not be written
        reason = exc.message if isinstance(exc, SlipstreamError) else (str(exc).strip().splitlines() or [""])[0]
        failed = replace(record, status="failed", error=reason or type(exc).__name__, size_bytes=0, sha256=None)
        store.write_sidecar(failed, **facts)
        raise BackupFailed(
            f"backup of {info.name} failed: {failed.error}",
            failed,
            f"the failure is recorded; fix the cause and run 'slipstream db backup {info.name}' again",
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise


def _run_client(argv: list[str], env: dict[str, str], timeout: float) -> None:
    """Run pg_dump/pg_restore; a failure raises CommandFailed naming the tool and its own error line."""
    result = runner.run(argv, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise CommandFailed(f"{Path(argv[0]).name} failed: {parse_client_error(result.stderr or result.stdout)}")


def _restore_env(endpoint: Endpoint) -> dict[str, str]:
    env = build_client_env(endpoint)
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout={RESTORE_LOCK_TIMEOUT}".strip()
    return env


def _pg_restore(bin_dir: Path, endpoint: Endpoint, backup: Backup, *, clean: bool) -> None:
    try:
        _run_client(
            build_pg_restore_argv(bin_dir, endpoint, backup.path, clean=clean), _restore_env(endpoint), timeout=6 * 3600
        )
    except CommandFailed as exc:
        raise CommandFailed(
            f"restore of {backup.id} into {endpoint.dbname} failed and was rolled back: {exc.message}",
            "the database is as it was before the restore",
        ) from None


def restore_backup(
    admin_endpoint: Endpoint, bin_dir: Path, info: DatabaseInfo, backup: Backup, *, into: str | None = None
) -> DatabaseInfo:
    """Restore ``backup`` over ``info``'s database (one transaction), or into a new database ``into``."""
    problem = check_archive(backup)
    if problem:
        raise InvalidInput(problem, f"choose another backup: slipstream db backups {info.name}")
    if into is None:
        _pg_restore(bin_dir, admin_endpoint.with_dbname(info.database), backup, clean=True)
        return info
    check_identifier(into, "database name")
    with admin.connect(admin_endpoint) as conn:
        if admin.database_owner(conn, into) is not None:
            raise Conflict(f"database {into} already exists", "choose another name for --into")
        admin.create_database(conn, into, info.user, label=into)
    try:
        _pg_restore(bin_dir, admin_endpoint.with_dbname(into), backup, clean=False)
    except BaseException:
        with admin.connect(admin_endpoint) as conn:
            conn.execute(q.build_drop_database(into))
        raise
    return replace(info, name=into, database=into)


def drill_backup(
    admin_endpoint: Endpoint, bin_dir: Path, info: DatabaseInfo, backup: Backup, tables: list[str] | None = None
) -> DrillReport:
    """Restore into a scratch database, compare with the sidecar, drop it; raise :class:`DrillFailed` unless ok."""
    problem = check_archive(backup)
    if problem:
        raise DrillFailed(DrillReport(False, {}, problem), "take a new backup and drill it")
    expected_tables = read_tables(backup) if tables is None else tables
    scratch = f"slipstream_drill_{secrets.token_hex(4)}"
    with admin.connect(admin_endpoint) as conn:
        admin.create_database(conn, scratch, info.user)
    try:
        try:
            _pg_restore(bin_dir, admin_endpoint.with_dbname(scratch), backup, clean=False)
        except CommandFailed as exc:
            raise DrillFailed(
                DrillReport(False, {}, f"backup {backup.id} does not restore: {exc.message}"),
                "take a new backup and drill it",
            ) from None
        with admin.connect(admin_endpoint.with_dbname(scratch)) as conn:
            limit = 1 << 62 if backup.row_counts is not None else -1
            restored_tables, counts = admin.table_counts(conn, limit=limit)
        restored = counts if counts is not None else {t: 0 for t in restored_tables}
        report = plan_drill(expected_tables, backup.row_counts, restored)
    finally:
        with admin.connect(admin_endpoint) as conn:
            conn.execute(q.build_drop_database(scratch))
    if not report.ok:
        raise DrillFailed(report, "the backup does not match what was recorded; take a new backup")
    return report


def read_tables(backup: Backup) -> list[str]:
    """The table list a backup's sidecar recorded (falling back to the keys of its row counts)."""
    try:
        data = json.loads(backup.path.with_name(f"{backup.id}.json").read_text())
    except (OSError, ValueError):
        data = {}
    recorded = data.get("tables")
    return [str(t) for t in recorded] if isinstance(recorded, list) else sorted(backup.row_counts or {})
