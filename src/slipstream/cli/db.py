"""``slipstream db ...``: managed PostgreSQL databases, backups, restores and drills."""

from __future__ import annotations

import datetime
import os

import typer
from rich.console import Console
from rich.table import Table

from slipstream.cli.client import Client

db_app = typer.Typer(help="Managed PostgreSQL: databases, backups, restores.", no_args_is_help=True)


def _c() -> Client:
    from slipstream.cli.main import client

    return client()


def _out() -> Console:
    from slipstream.cli.main import out

    return out


@db_app.command("list")
def list_() -> None:
    """Databases with their (masked) URL and backup count."""
    t = Table("name", "database", "user", "url", "backups", "last backup")
    for d in _c().get("/v1/databases")["databases"]:
        t.add_row(d["name"], d["database"], d["user"], d["url"], str(d["backups"]), d["last_backup"] or "-")
    _out().print(t)


@db_app.command()
def url(name: str, show: bool = typer.Option(False, "--show", help="print the password too")) -> None:
    """The connection string of NAME (password masked unless --show)."""
    _out().print(_c().get(f"/v1/databases/{name}/connection", reveal=show)["url"], markup=False, soft_wrap=True)


@db_app.command()
def psql(name: str) -> None:
    """Open psql on NAME as its own role."""
    conn = _c().get(f"/v1/databases/{name}/connection", reveal=True)["psql"]
    env = {**os.environ, "PGPASSWORD": conn["password"]}
    os.execvpe("psql", conn["argv"], env)


@db_app.command()
def backup(name: str) -> None:
    """Back up NAME now (pg_dump custom format); exit 1 when it fails."""
    b = _c().post(f"/v1/databases/{name}/backups")["backup"]
    _out().print(f"backup {b['id']}: {b['size_bytes']} bytes, {b['status']}")


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@db_app.command()
def backups(name: str) -> None:
    """NAME's backups, newest first, and how far back point-in-time recovery reaches."""
    t = Table("id", "kind", "created", "size", "status")
    for b in _c().get(f"/v1/databases/{name}/backups")["backups"]:
        t.add_row(
            b["id"],
            b["kind"],
            _utc(b["created_at"]),
            f"{b['size_bytes']:,}",
            b["status"] + (f": {b['error']}" if b["error"] else ""),
        )
    _out().print(t)
    window = _c().get("/v1/postgres/base-backups")
    if window["from"] is not None:
        _out().print(
            f"point-in-time recovery: any time from {_utc(window['from'])} to now "
            f"({len(window['base_backups'])} base backup{'' if len(window['base_backups']) == 1 else 's'}); "
            f"slipstream db restore {name} --to-time TIME --into NEW"
        )
    else:
        _out().print(
            "point-in-time recovery: no base backup yet (one is taken daily; 'slipstream db base-backup' takes one now)"
        )


@db_app.command("base-backup")
def base_backup() -> None:
    """A base backup of the whole cluster now: point-in-time recovery can reach back to it."""
    b = _c().post("/v1/postgres/base-backups")["base_backup"]
    _out().print(f"base backup {b['id']}: {b['size_bytes']:,} bytes, finished {_utc(b['finished_at'])}")


@db_app.command()
def restore(
    name: str,
    backup_id: str | None = typer.Argument(None, help="a backup id from 'db backups'"),
    into: str | None = typer.Option(None, "--into", help="restore into a new database instead"),
    to_time: str | None = typer.Option(
        None,
        "--to-time",
        help="point-in-time recovery as of this time (UTC unless an offset is given), into --into NEW",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
) -> None:
    """Restore BACKUP_ID into NAME (after confirmation) or into a new database; or, with
    --to-time, recover NAME as it was at that time into a new database."""
    from slipstream.cli.main import fail

    if to_time is not None:
        if backup_id is not None or into is None:
            fail(
                "--to-time restores into a new database and takes no backup id",
                f"slipstream db restore {name} --to-time {to_time} --into {name.replace('-', '_')}_recovered",
            )
        r = _c().post(f"/v1/databases/{name}/restore", {"to_time": to_time, "into": into})
        _out().print(f"recovered {name} as of {to_time} into database {r['database']}")
        return
    if backup_id is None:
        fail("restore needs a backup id (or --to-time)", f"run 'slipstream db backups {name}'")
    if into is None and not yes:
        typer.confirm(f"Replace the contents of {name} with backup {backup_id}?", abort=True)
    r = _c().post(f"/v1/databases/{name}/restore", {"backup": backup_id, "into": into})
    _out().print(f"restored {backup_id} into database {r['database']}")


@db_app.command()
def drill(name: str, backup_id: str | None = typer.Argument(None)) -> None:
    """Restore a backup (default: the newest) into a scratch database and check it."""
    from slipstream.cli.main import fail

    r = _c().post(f"/v1/databases/{name}/drill", {"backup": backup_id})
    for table, (want, got) in sorted(r["tables"].items()):
        _out().print(f"  {table}: {want} rows in the dump, {got} restored")
    if not r["ok"]:
        fail(f"drill failed: {r['message']}")
    _out().print(f"drill ok: {r['message']}")
