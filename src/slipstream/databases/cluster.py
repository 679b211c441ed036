"""The engine-facing boundary of the databases part: one :class:`Cluster` per slipstream home.

Either the embedded server (:mod:`slipstream.databases.server`, started and adopted by us) or an
operator's existing server given as ``admin_url`` (then ``start``/``stop`` do nothing). Either way
each blueprint database gets its own role (LOGIN, password) owning its own database, and only
that role (and the admin) may connect to it.
"""

from __future__ import annotations

import datetime
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from slipstream.databases import admin
from slipstream.databases.backups import BackupStore, drill_backup, restore_backup, take_backup
from slipstream.databases.commands import (
    PG_ROOT,
    build_client_env,
    build_hba_lines,
    build_psql_argv,
    find_pg_bin,
    parse_admin_url,
)
from slipstream.databases.models import (
    Backup,
    DatabaseInfo,
    DrillReport,
    Endpoint,
    check_extension,
    check_identifier,
    derive_identifier,
)
from slipstream.databases.pitr import BaseBackup, PointInTime
from slipstream.databases.server import EmbeddedServer
from slipstream.errors import Conflict, InvalidInput, Unavailable


class Cluster:
    """Managed PostgreSQL: lifecycle, one database + role per blueprint entry, backups, restores."""

    def __init__(
        self,
        data_dir: Path,
        backups_dir: Path,
        *,
        port: int | None = None,
        admin_url: str | None = None,
        traverse_root: Path | None = None,
        pg_root: Path = PG_ROOT,
        listen: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.store = BackupStore(Path(backups_dir))
        self._pg_root = pg_root
        self._external = parse_admin_url(admin_url) if admin_url else None
        self._server = (
            None
            if self._external
            else EmbeddedServer(Path(data_dir), port=port, traverse_root=traverse_root, pg_root=pg_root, listen=listen)
        )

    # Lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start (or adopt) the embedded server; with ``admin_url``, only check the server answers."""
        if self._server is not None:
            self._server.start()
        else:
            self.server_major_version()

    def stop(self) -> None:
        """Stop the embedded server (fast mode); a no-op with ``admin_url``."""
        if self._server is not None:
            self._server.stop()

    def running(self) -> bool:
        """Whether the server is up (embedded: ``pg_ctl status``; external: a login succeeds)."""
        if self._server is not None:
            return self._server.running()
        try:
            self.server_major_version()
            return True
        except Unavailable:
            return False

    def gone(self) -> bool:
        """Cheap (no pg_ctl): True when the embedded server's ``postmaster.pid`` names a process that
        is no longer there (it was killed); False while it runs, when it was stopped cleanly (no pid
        file) and for an external server."""
        return self._server is not None and self._server.dead_postmaster()

    def pid(self) -> int | None:
        """The embedded postmaster's pid, or None (not running, or an external server)."""
        if self._server is None or not self._server.running():
            return None
        postmaster = self._server.postmaster()
        return postmaster.pid if postmaster else None

    @property
    def host(self) -> str:
        """The address apps connect to."""
        return self._external.host if self._external else "127.0.0.1"

    @property
    def port(self) -> int:
        """The server's port (embedded: chosen once, persisted in the data dir, reused on restart)."""
        return self._external.port if self._external else self._embedded().port

    @property
    def ca_file(self) -> Path | None:
        """The embedded cluster's CA certificate (for ``sslmode=verify-full&sslrootcert=...``); None with
        an operator's server, or before the first start made it."""
        if self._server is None or not self._server.ca_file.exists():
            return None
        return self._server.ca_file

    @property
    def bin_dir(self) -> Path:
        """Where pg_dump, pg_restore and psql are taken from."""
        return self._server.bin_dir if self._server is not None else find_pg_bin(self._pg_root)

    def admin_endpoint(self, dbname: str = "postgres") -> Endpoint:
        """The admin login (superuser of the embedded cluster, or the operator's URL)."""
        if self._external is not None:
            return self._external.with_dbname(dbname)
        return self._embedded().admin_endpoint(dbname)

    # Databases -------------------------------------------------------------------------------
    def ensure_database(
        self, name: str, *, database_name: str | None = None, user: str | None = None, password: str
    ) -> DatabaseInfo:
        """Create the role (LOGIN) and the database it owns if missing; set the password every time."""
        if not password:
            raise InvalidInput(f"database {name}: an empty password is not allowed", "generate one")
        database = check_identifier(database_name, "databaseName") if database_name else derive_identifier(name)
        role = check_identifier(user, "user") if user else derive_identifier(name)
        with admin.connect(self.admin_endpoint()) as conn:
            admin.check_claim(conn, database, role, name)  # refuse before changing any password
            admin.ensure_role(conn, role, password)
            admin.create_database(conn, database, role, label=name)
        return DatabaseInfo(name, self.host, self.port, database, role, password)

    def drop_database(self, info: DatabaseInfo) -> None:
        """Drop the database (disconnecting its sessions) and its role, unless the role owns another."""
        with admin.connect(self.admin_endpoint()) as conn:
            admin.drop_database_and_role(conn, info.database, info.user)

    def ensure_extensions(self, info: DatabaseInfo, extensions: Sequence[str]) -> None:
        """``CREATE EXTENSION IF NOT EXISTS`` in ``info``'s database; InvalidInput when one is not installed."""
        names = [check_extension(ext) for ext in extensions]
        with admin.connect(self.admin_endpoint(info.database)) as conn:
            admin.ensure_extensions(conn, names)

    def server_major_version(self) -> int:
        """The server's major version, e.g. 15."""
        with admin.connect(self.admin_endpoint()) as conn:
            return admin.server_version_num(conn) // 10000

    # Backups ---------------------------------------------------------------------------------
    def backup(self, info: DatabaseInfo, kind: str = "manual") -> Backup:
        """``pg_dump`` now; a failure is recorded as a failed backup and raised as BackupFailed."""
        return take_backup(self.admin_endpoint(), self.bin_dir, self.store, info, kind)

    def backups(self, name: str) -> list[Backup]:
        """The backups of blueprint database ``name``, newest first."""
        return self.store.backups(name)

    def prune(self, name: str, keep: int = 7) -> list[Backup]:
        """Delete scheduled backups past the newest ``keep`` good ones; return what was deleted."""
        return self.store.prune(name, keep)

    def restore(self, info: DatabaseInfo, backup: Backup, *, into: str | None = None) -> DatabaseInfo:
        """Restore over the same database (one transaction), or into a new database ``into``."""
        return restore_backup(self.admin_endpoint(), self.bin_dir, info, backup, into=into)

    def drill(self, info: DatabaseInfo, backup: Backup) -> DrillReport:
        """Restore into a scratch database and compare with the sidecar; raises DrillFailed unless ok."""
        return drill_backup(self.admin_endpoint(), self.bin_dir, info, backup)

    # Point-in-time recovery (embedded cluster only) --------------------------------------------
    def base_backup(self) -> BaseBackup:
        """A ``pg_basebackup`` of the whole cluster now (the starting point of point-in-time recovery)."""
        return self._pitr().take_base_backup()

    def base_backups(self) -> list[BaseBackup]:
        """Base backups, newest first (none with an operator's server)."""
        return self._pitr().base_backups() if self._server is not None else []

    def prune_base_backups(self, keep: int = 7) -> list[BaseBackup]:
        """Keep the newest ``keep`` base backups and the archived WAL they need."""
        return self._pitr().prune(keep)

    def restore_to_time(self, info: DatabaseInfo, target: datetime.datetime, *, into: str) -> DatabaseInfo:
        """Recover the cluster as of ``target`` aside, and copy ``info``'s database from it into ``into``."""
        check_identifier(into, "database name")
        with admin.connect(self.admin_endpoint()) as conn:
            if admin.database_owner(conn, into) is not None:
                raise Conflict(f"database {into} already exists", "choose another name for --into")
        with self._pitr().recovered(target) as endpoint:
            scratch = self.store.root / f".pitr-{secrets.token_hex(4)}"
            try:
                dump = take_backup(endpoint, self.bin_dir, BackupStore(scratch), info, "manual")
                return restore_backup(self.admin_endpoint(), self.bin_dir, info, dump, into=into)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

    # Access ----------------------------------------------------------------------------------
    def psql_argv(self, info: DatabaseInfo) -> list[str]:
        """argv for an interactive psql as the app's role; run it with :meth:`psql_env` (holds PGPASSWORD)."""
        return build_psql_argv(self.bin_dir, self._app_endpoint(info))

    def psql_env(self, info: DatabaseInfo) -> dict[str, str]:
        """The environment for :meth:`psql_argv`: ``PGPASSWORD`` and a clean libpq setup."""
        return build_client_env(self._app_endpoint(info))

    def hba_rules(self, info: DatabaseInfo, cidrs: Sequence[str]) -> list[str]:
        """``pg_hba.conf`` lines for a database's ``ipAllowList`` (empty list: loopback only)."""
        return build_hba_lines(info.database, info.user, cidrs)

    def set_access(self, allow: Mapping[str, tuple[str, str, Sequence[str]]]) -> bool:
        """Apply every database's ``ipAllowList`` (name -> (database, role, CIDRs)) as ``pg_hba``
        rules of the embedded server; False with an operator's server, whose rules are its own."""
        lines = [line for name in sorted(allow) for line in build_hba_lines(*allow[name])]
        if self._server is None:
            return not lines
        self._server.set_access(lines)
        return True

    # Helpers ---------------------------------------------------------------------------------
    def _pitr(self) -> PointInTime:
        if self._server is None:
            raise Unavailable(
                "point-in-time recovery needs slipstream's own PostgreSQL cluster",
                "use your server's own tools, or restore a pg_dump backup",
            )
        return PointInTime(self._server)

    def _embedded(self) -> EmbeddedServer:
        assert self._server is not None
        return self._server

    def _app_endpoint(self, info: DatabaseInfo) -> Endpoint:
        options = self._external.options if self._external else ()
        return Endpoint(info.host, info.port, info.user, info.password, info.database, options)
