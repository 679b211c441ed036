"""``slipstream env ...``: change a service's env; a live service gets a new release, same build."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import typer

from slipstream.cli.common import client, fail, pick, print_json, print_table, wait_for_deploy

env_app = typer.Typer(help="A service's environment (values are never printed).", no_args_is_help=True)

ENV_KEYS = ("key", "value", "source")


def _parse(pairs: list[str], files: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs; a bare KEY reads its value from stdin (so it never shows in ``ps``);
    ``--from-file KEY=PATH`` reads it from a file."""
    values = {}
    bare = [p for p in pairs if "=" not in p]
    if len(bare) > 1:
        fail("only one KEY can read its value from stdin", "give the others as KEY=VALUE or --from-file KEY=PATH")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            if sys.stdin.isatty():
                value = getpass.getpass(f"{key}: ")
            else:
                value = sys.stdin.read().removesuffix("\n")
        values[key] = value
    for spec in files:
        key, sep, path = spec.partition("=")
        if not sep or not key:
            fail(f"'{spec}' is not KEY=PATH", "e.g. --from-file TLS_KEY=./key.pem")
        try:
            values[key] = Path(path).read_text()
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}")
    if not values:
        fail("nothing to set", "give KEY=VALUE, a bare KEY (value on stdin) or --from-file KEY=PATH")
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
def set_(
    service: str,
    pairs: list[str] = typer.Argument(None, metavar="KEY=VALUE... | KEY"),
    from_file: list[str] = typer.Option([], "--from-file", help="KEY=PATH: the value is the file's content"),
) -> None:
    """Set values (also answers sync: false variables) and roll them out. A bare KEY reads its
    value from stdin (or asks for it), so a secret never appears in the process list."""
    _apply(service, {"set": _parse(pairs or [], from_file), "unset": []})


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
