"""``slipstream db ...``: managed PostgreSQL databases, backups, restores and drills."""

from __future__ import annotations

import datetime
import os
from typing import Any

import typer

from slipstream.cli.common import FLAGS_ONLY, client, fail, pick, print_json, print_table
from slipstream.settings import child_environment

db_app = typer.Typer(
    help="Managed PostgreSQL: databases, backups, restores.", no_args_is_help=True, context_settings=FLAGS_ONLY
)

JSON_HELP = "print machine-readable JSON"
DATABASE_KEYS = ("name", "database", "user", "host", "port", "url", "backups", "last_backup")
BASE_BACKUP_KEYS = ("id", "finished_at", "size_bytes")
BACKUP_KEYS = ("id", "database", "kind", "created_at", "size_bytes", "status", "error")


@db_app.command("list", context_settings=FLAGS_ONLY)
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Databases with their (masked) URL and backup count."""
    dbs = client().get("/v1/databases")["databases"]
    if as_json:
        print_json([pick(d, DATABASE_KEYS) for d in dbs])  # the URL exactly as the API masked it
        return
    print_table(
        ("name", "database", "user", "url", "backups", "last backup"),
        ((d["name"], d["database"], d["user"], d["url"], str(d["backups"]), d["last_backup"] or "-") for d in dbs),
    )


@db_app.command()
def url(name: str, show: bool = typer.Option(False, "--show", help="print the password too")) -> None:
    """The connection string of NAME (password masked unless --show), and how to verify its TLS."""
    conn = client().get(f"/v1/databases/{name}/connection", reveal=show)
    typer.echo(conn["url"])
    if conn.get("ca_file"):
        typer.echo(
            f"TLS: add ?sslmode=verify-full&sslrootcert={conn['ca_file']} to verify the server "
            "(plain connections and sslmode=require work too)",
            err=True,
        )


@db_app.command()
def delete(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
    """Delete database NAME after a final backup (named here; restore it with 'db restore')."""
    if not yes:
        typer.confirm(f"Delete database {name}? A final backup is taken first.", abort=True)
    r = client().request("DELETE", f"/v1/databases/{name}")
    typer.echo(f"deleted database {name}; final backup {r['final_backup']} at {r['path']}")


@db_app.command()
def psql(name: str) -> None:
    """Open psql on NAME as its own role."""
    c = client()
    c.local_only("'db psql'")  # the tool connects to loopback addresses of the daemon's machine
    conn = c.get(f"/v1/databases/{name}/connection", reveal=True)["psql"]
    os.execvpe("psql", conn["argv"], child_environment(PGPASSWORD=conn["password"]))


@db_app.command()
def backup(name: str) -> None:
    """Back up NAME now (pg_dump custom format); exit 1 when it fails."""
    b = client().post(f"/v1/databases/{name}/backups")["backup"]
    typer.echo(f"backup {b['id']}: {b['size_bytes']} bytes, {b['status']}")


def _utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _pitr_line(name: str, window: dict[str, Any]) -> str:
    if window["from"] is None:
        return (
            "point-in-time recovery: no base backup yet (one is taken daily; 'slipstream db base-backup' takes one now)"
        )
    count = len(window["base_backups"])
    return (
        f"point-in-time recovery: any time from {_utc(window['from'])} to now "
        f"({count} base backup{'' if count == 1 else 's'}); "
        f"slipstream db restore {name} --to-time TIME --into NEW"
    )


@db_app.command()
def backups(name: str, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """NAME's backups, newest first, and how far back point-in-time recovery reaches."""
    c = client()
    items = c.get(f"/v1/databases/{name}/backups")["backups"]
    window = c.get("/v1/postgres/base-backups")
    if as_json:
        print_json(
            {
                "backups": [pick(b, BACKUP_KEYS) for b in items],
                "recovery": {
                    "from": window["from"],
                    "base_backups": [pick(b, BASE_BACKUP_KEYS) for b in window["base_backups"]],
                },
            }
        )
        return
    print_table(
        ("id", "kind", "created", "size", "status"),
        (
            (
                b["id"],
                b["kind"],
                _utc(b["created_at"]),
                f"{b['size_bytes']:,}",
                b["status"] + (f": {b['error']}" if b["error"] else ""),
            )
            for b in items
        ),
    )
    typer.echo(_pitr_line(name, window))


@db_app.command("base-backup", context_settings=FLAGS_ONLY)
def base_backup() -> None:
    """A base backup of the whole cluster now: point-in-time recovery can reach back to it."""
    b = client().post("/v1/postgres/base-backups")["base_backup"]
    typer.echo(f"base backup {b['id']}: {b['size_bytes']:,} bytes, finished {_utc(b['finished_at'])}")


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
    if to_time is not None:
        if backup_id is not None or into is None:
            fail(
                "--to-time restores into a new database and takes no backup id",
                f"slipstream db restore {name} --to-time {to_time} --into {name.replace('-', '_')}_recovered",
            )
        r = client().post(f"/v1/databases/{name}/restore", {"to_time": to_time, "into": into})
        typer.echo(f"recovered {name} as of {to_time} into database {r['database']}")
        return
    if backup_id is None:
        fail("restore needs a backup id (or --to-time)", f"run 'slipstream db backups {name}'")
    if into is None and not yes:
        typer.confirm(f"Replace the contents of {name} with backup {backup_id}?", abort=True)
    r = client().post(f"/v1/databases/{name}/restore", {"backup": backup_id, "into": into})
    typer.echo(f"restored {backup_id} into database {r['database']}")


@db_app.command()
def drill(name: str, backup_id: str | None = typer.Argument(None)) -> None:
    """Restore a backup (default: the newest) into a scratch database and check it."""
    r = client().post(f"/v1/databases/{name}/drill", {"backup": backup_id})
    for table, (want, got) in sorted(r["tables"].items()):
        typer.echo(f"  {table}: {want} rows in the dump, {got} restored")
    if not r["ok"]:
        fail(f"drill failed: {r['message']}")
    typer.echo(f"drill ok: {r['message']}")
