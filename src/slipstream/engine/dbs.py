"""Managed PostgreSQL as the engine uses it: databases from blueprints, snapshots before
migrations, scheduled backups with retention, restores and drills.

The embedded cluster starts on first need (a blueprint with ``databases:``, or a daemon start that
finds databases in the state) and keeps running when the daemon stops; a restarted daemon adopts it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from slipstream.errors import NotFound
from slipstream.secrets import Masker, generate_value
from slipstream.settings import Settings
from slipstream.state.store import Store

if TYPE_CHECKING:  # psycopg costs ~10 MB of daemon memory: loaded only once a database exists
    from slipstream.databases import Backup, Cluster, DatabaseInfo, DrillReport
    from slipstream.databases.pitr import BaseBackup

log = logging.getLogger("slipstream.databases")

PASSWORD_KEY = "database:{name}.password"
ACCESS_KEY = "postgres.ip-allow-lists"  # name -> [database, role, [CIDR, ...]]


class DatabaseManager:
    """One cluster, the blueprint databases in it, and their backups."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        masker: Masker,
        *,
        backup_interval_s: float = 86400.0,
        retention: int = 7,
    ) -> None:
        self.settings = settings
        self.store = store
        self.masker = masker
        self.backup_interval_s = backup_interval_s
        self.retention = retention
        self._cluster: Cluster | None = None
        self._lock = threading.Lock()
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            from slipstream.databases import Cluster

            listen = list(self.settings.postgres_listen)
            self._cluster = Cluster(
                self.settings.postgres_dir,
                self.settings.backups_dir,
                admin_url=self.settings.postgres_admin_url,
                listen=listen,
            )
        return self._cluster

    # -- lifecycle ----------------------------------------------------------------------------
    def ensure_started(self) -> None:
        """Start (or adopt) the cluster once."""
        with self._lock:
            if not self._started:
                self.cluster.start()
                self._started = True

    def start(self) -> None:
        """At daemon start: adopt the cluster when databases exist; start the backup schedule."""
        if self.store.databases():
            self.ensure_started()
            for db in self.store.databases():
                self.masker.add([self._password(db["name"])])
        self._thread = threading.Thread(target=self._schedule, daemon=True, name="backups")
        self._thread.start()

    def ensure_running(self) -> bool:
        """The embedded cluster killed (kill -9, OOM): start it again; True if it was down."""
        with self._lock:
            if not self._started or self._stop.is_set() or not self.cluster.gone():
                return False
            self.cluster.start()
        self.store.event("backup", "PostgreSQL was not running; started again")
        log.warning("PostgreSQL was not running; started again")
        return True

    def close(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        """Stop the cluster (``slipstream down``)."""
        self._stop.set()
        known = self._started or self.store.databases() or self.settings.postgres_dir.exists()
        if known and self.cluster.running():
            self.cluster.stop()

    # -- databases ----------------------------------------------------------------------------
    def _password(self, name: str) -> str:
        key = PASSWORD_KEY.format(name=name)
        kept = self.store.kept_values()
        if key not in kept:
            kept[key] = generate_value().replace("/", "_").replace("+", "-").rstrip("=")
            self.store.keep_value(key, kept[key])
        return kept[key]

    def ensure(
        self,
        name: str,
        *,
        database_name: str | None = None,
        user: str | None = None,
        major_version: int | str | None = None,
        extensions: Sequence[str] = (),
        ip_allow_list: Sequence[str] = (),
    ) -> DatabaseInfo:
        """Create (idempotently) the database and role of a blueprint entry, and its extensions.
        A ``major_version`` other than the machine's is not an error (see :meth:`version_note`)."""
        self.ensure_started()
        password = self._password(name)
        info = self.cluster.ensure_database(name, database_name=database_name, user=user, password=password)
        self.store.put_database(name, info.database, info.user, info.host, info.port)
        self.masker.add([password, info.connection_string()])
        if extensions:
            self.cluster.ensure_extensions(info, extensions)
        self._set_access(name, info, ip_allow_list)
        return info

    def version_note(self, name: str, major_version: int | str | None) -> str | None:
        """What to tell the user when a blueprint asks for a PostgreSQL major version this machine
        does not run: the database runs on the machine's (one cluster serves every database)."""
        if major_version is None:
            return None
        self.ensure_started()
        have = self.cluster.server_major_version()
        if int(str(major_version).split(".")[0]) == have:
            return None
        return (
            f"database {name} asks for postgresMajorVersion {major_version}; this machine runs PostgreSQL "
            f"{have}, so it runs on {have} (install PostgreSQL {major_version} and set "
            "SLIPSTREAM_POSTGRES_ADMIN_URL to use that server instead)"
        )

    def provide(
        self,
        name: str,
        *,
        database_name: str | None = None,
        user: str | None = None,
        major_version: int | str | None = None,
        extensions: Sequence[str] = (),
        ip_allow_list: Sequence[str] = (),
    ) -> dict[str, str]:
        """``ensure``, answering the connection properties a blueprint's ``fromDatabase`` reads."""
        info = self.ensure(
            name,
            database_name=database_name,
            user=user,
            major_version=major_version,
            extensions=extensions,
            ip_allow_list=ip_allow_list,
        )
        return info.properties()

    def known(self, name: str) -> dict[str, str] | None:
        """Connection properties of a database that already exists; None otherwise. Creates nothing."""
        db = next((d for d in self.store.databases() if d["name"] == name), None)
        password = self.store.kept_values().get(PASSWORD_KEY.format(name=name))
        if db is None or password is None:
            return None
        from slipstream.databases.models import DatabaseInfo

        info = DatabaseInfo(name, db["host"], db["port"], db["database_name"], db["user"], password)
        return info.properties()

    def _set_access(self, name: str, info: DatabaseInfo, cidrs: Sequence[str]) -> None:
        """Keep ``name``'s ``ipAllowList`` and apply every database's as pg_hba rules."""
        kept = json.loads(self.store.kept_values().get(ACCESS_KEY, "{}"))
        entry = [info.database, info.user, list(cidrs)]
        if kept.get(name) == entry:
            return
        if cidrs:
            kept[name] = entry
        else:
            kept.pop(name, None)
        if not self.cluster.set_access({n: (d, u, c) for n, (d, u, c) in kept.items()}):
            log.warning("ipAllowList of %s not applied: an operator's PostgreSQL keeps its own pg_hba rules", name)
        self.store.keep_value(ACCESS_KEY, json.dumps(kept, sort_keys=True))

    def forget(self, name: str) -> None:
        """Drop what slipstream keeps of a database that was dropped (record, password, access rules)."""
        self.store.delete_database(name)
        self.store.forget_value(PASSWORD_KEY.format(name=name))
        kept = json.loads(self.store.kept_values().get(ACCESS_KEY, "{}"))
        if kept.pop(name, None) is not None:
            self.cluster.set_access({n: (d, u, c) for n, (d, u, c) in kept.items()})
            self.store.keep_value(ACCESS_KEY, json.dumps(kept, sort_keys=True))

    def info(self, name: str) -> DatabaseInfo:
        db = next((d for d in self.store.databases() if d["name"] == name), None)
        if db is None:
            raise NotFound(f"unknown database '{name}'", "run 'slipstream db list'")
        self.ensure_started()
        from slipstream.databases import DatabaseInfo

        return DatabaseInfo(name, db["host"], db["port"], db["database_name"], db["user"], self._password(name))

    def overview(self) -> list[dict[str, Any]]:
        out = []
        for db in self.store.databases():
            backups = self.cluster.backups(db["name"]) if self._started else []
            out.append(
                {
                    "name": db["name"],
                    "database": db["database_name"],
                    "user": db["user"],
                    "host": db["host"],
                    "port": db["port"],
                    "url": f"postgresql://{db['user']}:********@{db['host']}:{db['port']}/{db['database_name']}",
                    "backups": len(backups),
                    "last_backup": backups[0].id if backups else None,
                }
            )
        return out

    # -- backups ------------------------------------------------------------------------------
    def backup(self, name: str, kind: str = "manual") -> Backup:
        info = self.info(name)
        try:
            b = self.cluster.backup(info, kind=kind)
        except Exception as exc:
            self.store.event("backup", f"backup of {name} FAILED: {exc}")
            log.error("backup of %s failed: %s", name, exc)
            raise
        self.store.event("backup", f"backup {b.id} of {name}: {b.size_bytes} bytes ({kind})")
        return b

    def backups(self, name: str) -> list[Backup]:
        self.info(name)
        return self.cluster.backups(name)

    def find_backup(self, name: str, backup_id: str) -> Backup:
        b = next((b for b in self.backups(name) if b.id == backup_id), None)
        if b is None:
            raise NotFound(f"no backup '{backup_id}' of {name}", f"run 'slipstream db backups {name}'")
        return b

    def restore(self, name: str, backup_id: str, into: str | None = None) -> DatabaseInfo:
        info = self.info(name)
        restored = self.cluster.restore(info, self.find_backup(name, backup_id), into=into)
        self.store.event("backup", f"restored {backup_id} into {restored.database}")
        return restored

    def restore_to_time(self, name: str, when: str, into: str) -> DatabaseInfo:
        """Point-in-time recovery of ``name`` as of ``when`` into the new database ``into``."""
        from slipstream.databases.pitr import parse_target_time

        target = parse_target_time(when)
        info = self.info(name)
        restored = self.cluster.restore_to_time(info, target, into=into)
        self.store.event("backup", f"restored {name} as of {target.isoformat()} into {restored.database}")
        return restored

    def base_backup(self) -> BaseBackup:
        """A base backup of the whole cluster now (loud on failure, like every backup)."""
        self.ensure_started()
        try:
            b = self.cluster.base_backup()
        except Exception as exc:
            self.store.event("backup", f"base backup FAILED: {exc}")
            log.error("base backup failed: %s", exc)
            raise
        self.store.event("backup", f"base backup {b.id}: {b.size_bytes} bytes")
        return b

    def recovery_window(self) -> dict[str, Any]:
        """Base backups and the span of times ``restore --to-time`` can reach."""
        bases = self.cluster.base_backups() if self._started else []
        return {
            "base_backups": [{"id": b.id, "finished_at": b.finished_at, "size_bytes": b.size_bytes} for b in bases],
            "from": bases[-1].finished_at if bases else None,
        }

    def drill(self, name: str, backup_id: str | None = None) -> DrillReport:
        info = self.info(name)
        backups = self.cluster.backups(name)
        if not backups:
            raise NotFound(f"{name} has no backup to drill", f"run 'slipstream db backup {name}' first")
        b = self.find_backup(name, backup_id) if backup_id else backups[0]
        return self.cluster.drill(info, b)

    def snapshot(self, names: list[str]) -> list[Backup]:
        """Pre-deploy snapshots of the named databases (raises when one fails: migrations wait)."""
        return [self.backup(n, kind="pre_deploy") for n in names]

    def _schedule(self) -> None:
        while not self._stop.wait(60):
            if not self._started:
                continue
            for db in self.store.databases():
                try:
                    last = [b for b in self.cluster.backups(db["name"]) if b.kind == "scheduled" and b.status == "ok"]
                    if last and time.time() - last[0].created_at < self.backup_interval_s:
                        continue
                    self.backup(db["name"], kind="scheduled")
                    self.cluster.prune(db["name"], keep=self.retention)
                except Exception:  # loud (event + log) but the schedule goes on
                    log.exception("scheduled backup of %s failed", db["name"])
            self._scheduled_base_backup()

    def _scheduled_base_backup(self) -> None:
        """The embedded cluster's base backup for point-in-time recovery, on the same interval."""
        if self.settings.postgres_admin_url or not self.store.databases():
            return
        try:
            bases = self.cluster.base_backups()
            if bases and time.time() - bases[0].finished_at < self.backup_interval_s:
                return
            self.base_backup()
            self.cluster.prune_base_backups(keep=self.retention)
        except Exception:
            log.exception("scheduled base backup failed")
