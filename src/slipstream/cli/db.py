"""``slipstream db ...``: managed PostgreSQL databases, backups, restores and drills."""

from __future__ import annotations

import datetime
import os
from typing import Optional

import typer
from rich.table import Table

db_app = typer.Typer(help="Managed PostgreSQL: databases, backups, restores.", no_args_is_help=True)


def _c():  # type: ignore[no-untyped-def]
    from slipstream.cli.main import client
    return client()


def _out():  # type: ignore[no-untyped-def]
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


@db_app.command()
def backups(name: str) -> None:
    """NAME's backups, newest first."""
    t = Table("id", "kind", "created", "size", "status")
    for b in _c().get(f"/v1/databases/{name}/backups")["backups"]:
        when = datetime.datetime.fromtimestamp(b["created_at"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        t.add_row(b["id"], b["kind"], when, f"{b['size_bytes']:,}", b["status"] + (f": {b['error']}" if b["error"] else ""))
    _out().print(t)


@db_app.command()
def restore(name: str, backup_id: str,
            into: Optional[str] = typer.Option(None, "--into", help="restore into a new database instead"),
            yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
    """Restore BACKUP_ID into NAME (after confirmation) or into a new database."""
    if into is None and not yes:
        typer.confirm(f"Replace the contents of {name} with backup {backup_id}?", abort=True)
    r = _c().post(f"/v1/databases/{name}/restore", {"backup": backup_id, "into": into})
    _out().print(f"restored {backup_id} into database {r['database']}")


@db_app.command()
def drill(name: str, backup_id: Optional[str] = typer.Argument(None)) -> None:
    """Restore a backup (default: the newest) into a scratch database and check it."""
    from slipstream.cli.main import fail
    r = _c().post(f"/v1/databases/{name}/drill", {"backup": backup_id})
    for table, (want, got) in sorted(r["tables"].items()):
        _out().print(f"  {table}: {want} rows in the dump, {got} restored")
    if not r["ok"]:
        fail(f"drill failed: {r['message']}")
    _out().print(f"drill ok: {r['message']}")
