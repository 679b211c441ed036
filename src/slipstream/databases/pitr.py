"""Point-in-time recovery for the embedded cluster: WAL archiving, base backups, recovery to a time.

The live server archives every finished WAL segment into ``<root>/wal`` (``archive_settings``
in :mod:`~slipstream.databases.commands`, written into ``slipstream.conf`` on each start).
:class:`PointInTime` adds two things on top:

1. ``take_base_backup()``: ``pg_basebackup`` (plain files, WAL streamed alongside) of the whole
   cluster into ``<root>/base/<id>/`` plus a sidecar ``<id>.json``; ``prune(keep)`` deletes old
   ones and the archived WAL only they needed (``pg_archivecleanup``).
2. ``recovered(target)``: a context manager. It makes the live server write a commit after
   ``target`` and archive its current segment (so replay has a stop point and the WAL for it), copies
   the newest base backup finished before ``target`` into a scratch directory, starts a throwaway
   server there that replays archived WAL up to ``target`` and promotes, and yields that server's
   admin endpoint. On exit the scratch server is stopped and its directory removed. The live
   server is never touched beyond the WAL switch.

Everything on disk here belongs to the cluster's OS user (commands run as it, like the server's).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from slipstream.databases import admin
from slipstream.databases.commands import (
    build_client_env,
    build_pg_ctl_argv,
    parse_log_failure,
    recovery_settings,
    render_postgresql_conf,
)
from slipstream.databases.models import Endpoint
from slipstream.databases.server import EmbeddedServer, free_port
from slipstream.errors import CommandFailed, InvalidInput, NotFound, Unavailable
from slipstream.fsutil import dir_size

_START_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", re.M)
ARCHIVE_WAIT_S = 60.0


def parse_target_time(text: str) -> dt.datetime:
    """``2026-11-23T19:50:00Z``, ``2026-11-23 19:50:00+01:00`` or a time without offset (UTC)."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace(" UTC", "").replace("z", "Z"))
    except ValueError:
        raise InvalidInput(
            f"'{text}' is not a time slipstream can read",
            "write it like 2026-11-23T19:50:00Z (UTC) or with an offset, +01:00",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class BaseBackup:
    """One ``pg_basebackup`` of the whole cluster."""

    id: str
    path: Path
    started_at: float
    finished_at: float
    start_wal: str
    size_bytes: int

    def to_dict(self) -> dict[str, object]:
        """The sidecar / API form."""
        return {**asdict(self), "path": str(self.path)}


def choose_base(backups: Sequence[BaseBackup], target: dt.datetime) -> BaseBackup | None:
    """The newest base backup that finished before ``target`` (replay can only go forward from one)."""
    usable = [b for b in backups if b.finished_at <= target.timestamp()]
    return max(usable, key=lambda b: b.finished_at) if usable else None


class PointInTime:
    """Base backups and recovery to a time for one :class:`EmbeddedServer`; see the module docstring."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.wal_dir = server.root / "wal"
        self.base_dir = server.root / "base"

    # Base backups ----------------------------------------------------------------------------
    def base_backups(self) -> list[BaseBackup]:
        """Finished base backups, newest first."""
        out = []
        for sidecar in self.base_dir.glob("base-*.json") if self.base_dir.is_dir() else ():
            try:
                data = json.loads(sidecar.read_text())
                out.append(BaseBackup(**{**data, "path": Path(data["path"])}))
            except (OSError, ValueError, TypeError, KeyError):
                continue
        return sorted((b for b in out if b.path.is_dir()), key=lambda b: -b.finished_at)

    def take_base_backup(self) -> BaseBackup:
        """``pg_basebackup`` now (fast checkpoint); CommandFailed when it fails (nothing is kept then)."""
        self._check_archiving()
        self._own_dir(self.base_dir)
        started = time.time()
        backup_id = time.strftime("base-%Y%m%dT%H%M%SZ", time.gmtime(started))
        n = 1
        while (self.base_dir / backup_id).exists() or (self.base_dir / f"{backup_id}.json").exists():
            n += 1
            backup_id = time.strftime("base-%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{n}"
        target = self.base_dir / backup_id
        endpoint = self.server.admin_endpoint()
        argv = [
            str(self.server.bin_dir / "pg_basebackup"),
            "--host",
            endpoint.host,
            "--port",
            str(endpoint.port),
            "--username",
            endpoint.user,
            "--no-password",
            "--pgdata",
            str(target),
            "--format",
            "plain",
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
        ]
        try:
            self.server.run_as_owner(argv, env=build_client_env(endpoint), timeout=6 * 3600)
            label = (target / "backup_label").read_text()
        except (CommandFailed, OSError) as exc:
            shutil.rmtree(target, ignore_errors=True)
            reason = exc.message if isinstance(exc, CommandFailed) else str(exc)
            raise CommandFailed(f"base backup failed: {reason}", f"see {self.server.log}") from None
        match = _START_WAL.search(label)
        backup = BaseBackup(backup_id, target, started, time.time(), match.group(1) if match else "", dir_size(target))
        tmp = self.base_dir / f".{backup_id}.json.tmp"
        tmp.write_text(json.dumps(backup.to_dict(), indent=2))
        os.replace(tmp, self.base_dir / f"{backup_id}.json")
        return backup

    def prune(self, keep: int) -> list[BaseBackup]:
        """Keep the newest ``keep`` base backups and the WAL they need; return what was deleted."""
        backups = self.base_backups()
        gone = backups[max(1, keep) :]
        for b in gone:
            (self.base_dir / f"{b.id}.json").unlink(missing_ok=True)
            shutil.rmtree(b.path, ignore_errors=True)
        kept = backups[: max(1, keep)]
        if kept and kept[-1].start_wal and self.wal_dir.is_dir():
            cleanup = self.server.bin_dir / "pg_archivecleanup"
            self.server.run_as_owner([str(cleanup), str(self.wal_dir), kept[-1].start_wal])
        return gone

    def window(self) -> tuple[float, float] | None:
        """The span of times a recovery can reach: (oldest base backup's end, now), or None."""
        backups = self.base_backups()
        return (backups[-1].finished_at, time.time()) if backups else None

    # Recovery --------------------------------------------------------------------------------
    @contextmanager
    def recovered(self, target: dt.datetime) -> Iterator[Endpoint]:
        """A throwaway server holding the cluster as it was at ``target``; see the module docstring."""
        if target.timestamp() > time.time():
            raise InvalidInput(f"{target.isoformat()} is in the future", "pick a time in the past")
        self._check_archiving()
        base = choose_base(self.base_backups(), target)
        if base is None:
            have = self.window()
            since = dt.datetime.fromtimestamp(have[0], dt.UTC).isoformat(timespec="seconds") if have else None
            raise NotFound(
                f"no base backup finished before {target.isoformat()}"
                + (f"; recovery reaches back to {since}" if since else ""),
                "pick a later time" if since else "take one with 'slipstream db base-backup'",
            )
        self._archive_now()
        scratch = self.server.root / f"pitr-{secrets.token_hex(4)}"
        pgdata, socket_dir, log = scratch / "pgdata", scratch / "socket", scratch / "postgres.log"
        self._own_dir(scratch)
        self.server.run_as_owner(["cp", "-a", str(base.path), str(pgdata)], timeout=6 * 3600)
        self.server.run_as_owner(["mkdir", "-m", "0700", str(socket_dir)])
        for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
            (pgdata / stale).unlink(missing_ok=True)
        port = free_port()
        # TLS off in the scratch server: only slipstream's own pg_dump connects to it, over loopback
        extra = ["ssl = off", *recovery_settings(self.wal_dir, target)]
        conf = render_postgresql_conf(port, socket_dir, extra=extra)
        self.server.write_owned(pgdata / "slipstream.conf", conf)
        self.server.write_owned(pgdata / "recovery.signal", "")
        started = False
        try:
            try:
                start = build_pg_ctl_argv(self.server.bin_dir, "start", pgdata, log=log)
                self.server.run_as_owner(start, timeout=6 * 3600)
                started = True
            except CommandFailed:
                tail = log.read_text(errors="replace")[-20000:] if log.exists() else ""
                raise CommandFailed(
                    f"recovery to {target.isoformat()} failed: "
                    f"{parse_log_failure(tail) or 'the recovery server did not start'}",
                    "pick another time; the live database is untouched",
                ) from None
            endpoint = Endpoint(
                "127.0.0.1", port, self.server.admin_endpoint().user, self.server.admin_endpoint().password
            )
            self._wait_promoted(endpoint, pgdata, log, target)
            yield endpoint
        finally:
            if started:
                stop = [
                    str(self.server.bin_dir / "pg_ctl"),
                    "stop",
                    "--pgdata",
                    str(pgdata),
                    "--mode",
                    "immediate",
                    "--wait",
                    "--silent",
                ]
                self.server.run_as_owner(stop, check=False, timeout=120)
            shutil.rmtree(scratch, ignore_errors=True)

    # Helpers ---------------------------------------------------------------------------------
    def _check_archiving(self) -> None:
        with admin.connect(self.server.admin_endpoint()) as conn:
            row = conn.execute("SELECT current_setting('archive_mode'), current_setting('archive_command')").fetchone()
        if row is None or row[0] != "on" or str(self.wal_dir) not in str(row[1]):
            raise Unavailable(
                "WAL archiving is not on in the running PostgreSQL (it starts with the next server start)",
                "restart it: 'slipstream down' then 'slipstream up'",
            )

    def _archive_now(self) -> None:
        """A commit stamped now (the stop point replay needs), then switch and wait for that segment."""
        with admin.connect(self.server.admin_endpoint()) as conn:
            conn.execute("SELECT txid_current()")  # autocommit: its own transaction, committed now
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = self.wal_dir / str(row[0])
        deadline = time.monotonic() + ARCHIVE_WAIT_S
        while not segment.exists():
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"WAL segment {segment.name} was not archived within {ARCHIVE_WAIT_S:g} s",
                    f"check archive_command errors in {self.server.log}",
                )
            time.sleep(0.05)

    def _wait_promoted(
        self, endpoint: Endpoint, pgdata: Path, log: Path, target: dt.datetime, timeout: float = 6 * 3600
    ) -> None:
        """Until replay reached ``target`` and the server promoted (it refuses logins until then)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with admin.connect(endpoint) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and row[0] is False:
                    return
            except Unavailable:
                pass  # still replaying ("hot standby mode is disabled")
            status = self.server.run_as_owner(build_pg_ctl_argv(self.server.bin_dir, "status", pgdata), check=False)
            if status.returncode != 0:
                tail = log.read_text(errors="replace")[-20000:] if log.exists() else ""
                raise CommandFailed(
                    f"recovery to {target.isoformat()} failed: "
                    f"{parse_log_failure(tail) or 'the recovery server stopped'}",
                    "pick another time; the live database is untouched",
                )
            if time.monotonic() > deadline:
                raise Unavailable(f"recovery to {target.isoformat()} did not finish within {timeout:g} s")
            time.sleep(0.1)

    def _own_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        self.server.own(path, 0o700)
