"""``slipstream kv ...``: managed key value (Redis) instances."""

from __future__ import annotations

import os

import typer

from slipstream.cli.common import FLAGS_ONLY, client, pick, print_json, print_table
from slipstream.settings import child_environment

kv_app = typer.Typer(help="Managed key value (Redis) instances.", no_args_is_help=True, context_settings=FLAGS_ONLY)

KV_KEYS = ("name", "host", "port", "url", "running", "pid", "policy", "maxmemory", "used_memory")


@kv_app.command("list", context_settings=FLAGS_ONLY)
def list_(as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON")) -> None:
    """Key value instances with their (masked) URL and state."""
    items = client().get("/v1/keyvalues")["keyvalues"]
    if as_json:
        print_json([pick(k, KV_KEYS) for k in items])
        return
    print_table(
        ("name", "url", "state", "policy", "memory"),
        (
            (
                k["name"],
                k["url"],
                "running" if k["running"] else "stopped",
                k.get("policy") or "-",
                f"{(k.get('used_memory') or 0) / 1e6:.1f} MB"
                + (f" of {k['maxmemory'] / 1e6:.0f} MB" if k.get("maxmemory") else ""),
            )
            for k in items
        ),
    )


@kv_app.command()
def url(name: str, show: bool = typer.Option(False, "--show", help="print the password too")) -> None:
    """The connection string of NAME (password masked unless --show)."""
    typer.echo(client().get(f"/v1/keyvalues/{name}/connection", reveal=show)["url"])


@kv_app.command("cli")
def cli_(name: str) -> None:
    """Open redis-cli on NAME (the password goes through the environment, not the command line)."""
    c = client()
    c.local_only("'kv cli'")  # the tool connects to loopback addresses of the daemon's machine
    conn = c.get(f"/v1/keyvalues/{name}/connection", reveal=True)
    os.execvpe("redis-cli", conn["argv"], child_environment(REDISCLI_AUTH=conn["password"]))


@kv_app.command()
def delete(
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    purge: bool = typer.Option(False, "--purge", help="remove its data too (default: moved aside)"),
) -> None:
    """Stop and delete key value NAME (its data is moved aside unless --purge)."""
    if not yes:
        typer.confirm(f"Delete key value {name}?", abort=True)
    r = client().request("DELETE", f"/v1/keyvalues/{name}", params={"purge": purge})
    typer.echo(
        f"deleted key value {name}" + (f"; its data is kept at {r['data_moved_to']}" if r["data_moved_to"] else "")
    )
