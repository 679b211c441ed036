"""``slipstream env ...``: change a service's env; a live service gets a new release, same build."""

from __future__ import annotations

from typing import Any

import typer

from slipstream.cli.common import client, fail, pick, print_json, print_table, wait_for_deploy

env_app = typer.Typer(help="A service's environment (values are never printed).", no_args_is_help=True)

ENV_KEYS = ("key", "value", "source")


def _parse(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(f"'{pair}' is not KEY=VALUE")
        values[key] = value
    return values


def _apply(service: str, body: dict[str, Any]) -> None:
    c = client()
    d = c.post(f"/v1/services/{service}/env", body)["deploy"]
    if d is None:
        typer.echo(f"saved; {service} uses it from its next deploy")
        return
    typer.echo(f"Rolling out the new env of {service} from the same build (deploy {d['id']})")
    wait_for_deploy(c, d)


@env_app.command("set")
def set_(service: str, pairs: list[str] = typer.Argument(..., metavar="KEY=VALUE...")) -> None:
    """Set values (also answers sync: false variables) and roll them out."""
    _apply(service, {"set": _parse(pairs), "unset": []})


@env_app.command()
def unset(service: str, keys: list[str]) -> None:
    """Remove keys from the service's env and roll that out."""
    _apply(service, {"set": {}, "unset": keys})


@env_app.command("list")
def list_(service: str, as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON")) -> None:
    """Keys of the live env and where each comes from (values masked)."""
    env = client().get(f"/v1/services/{service}/env")["env"]
    if as_json:
        print_json([pick(e, ENV_KEYS) for e in env])  # values exactly as the API masked them
        return
    print_table(("key", "value", "source"), ((e["key"], e["value"], e["source"]) for e in env))
