"""What every command module shares: errors, output, the daemon's client, waiting for a deploy.

Output rules: plain lines go through ``typer.echo`` (printed exactly, no markup, no emoji codes);
tables and the deploy spinner use Rich, imported only by the commands that draw them (keeps
start-up short); ``--json`` prints with :func:`print_json`, never through Rich. Errors are one
``Error: ...`` line on stderr (and an indented hint) with exit 1, via :func:`fail`.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from slipstream import states
from slipstream.cli.client import Client
from slipstream.cli.fast import printable as printable  # re-exported: the commands import it from here
from slipstream.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from rich.console import Console

# Typer (0.29) imports pydantic, its parameter coercion, for the first parameter value that is not
# already of its type; an absent --help flag is None, not False, so every command would pay that
# import (more than Typer's own). A default of False for --help lets a command whose parameters are
# all flags (status, up, down, db list) start without it: pass this as its ``context_settings``.
FLAGS_ONLY: dict[str, Any] = {"default_map": {"help": False}}

FAILED: frozenset[str] = frozenset(states.FAILED)
SUCCEEDED: frozenset[str] = frozenset({states.DeployStatus.LIVE, states.DeployStatus.DEACTIVATED})


def print_error(message: str, hint: str | None = None) -> None:
    """``Error: message`` (red on a terminal) and an indented hint, on stderr."""
    typer.secho("Error:", fg="red", err=True, nl=False)
    typer.echo(f" {printable(message)}", err=True)
    if hint:
        typer.echo(f"  {printable(hint)}", err=True)


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Print the error and exit 1."""
    print_error(message, hint)
    raise typer.Exit(1)


@functools.cache
def out() -> Console:
    """The Rich console on stdout (piped output gets wide lines instead of Rich's 80 columns)."""
    from rich.console import Console

    return Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200)


@functools.cache
def err() -> Console:
    """The Rich console on stderr (spinners)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


def print_json(data: Any, indent: int | None = 2) -> None:
    """Machine-readable output: plain JSON on stdout (``indent=None``: one line, for JSON lines)."""
    typer.echo(json.dumps(data, indent=indent, ensure_ascii=False))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A Rich table on stdout; cells are text, never markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns)
    for row in rows:
        table.add_row(*(Text(printable(cell)) for cell in row))
    out().print(table)


def pick(item: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """``item`` reduced to ``keys`` in that order: the stable shape of a ``--json`` listing."""
    return {k: item.get(k) for k in keys}


def settings() -> Settings:
    """The settings from the environment; a bad value is an error line, not a traceback."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def _socket_client() -> Client:
    return Client(settings())


# How commands get their client; tests replace it with one that answers from a fake API.
make_client: Callable[[], Client] = _socket_client


def client() -> Client:
    """The daemon's API client."""
    return make_client()


def _print_events(c: Client, deploy_id: int, after: int) -> int:
    """Print the deploy's events after ``after`` (command output indented); return the last id."""
    for ev in c.get(f"/v1/deploys/{deploy_id}/events", after=after)["events"]:
        after = ev["id"]
        prefix = "       " if ev["kind"] in ("build", "pre_deploy", "app") else ""
        out().print(prefix + printable(ev["message"]), markup=False, soft_wrap=True)
    return after


def wait_for_deploy(c: Client, deploy: dict[str, Any]) -> None:
    """Print the deploy's transcript as it happens; return when live, exit 1 when it failed."""
    deploy_id, after, status = deploy["id"], 0, deploy["status"]
    d = deploy
    with err().status(f"deploy {deploy_id}: {status}") as spinner:
        while True:
            after = _print_events(c, deploy_id, after)
            d = c.get(f"/v1/deploys/{deploy_id}")["deploy"]
            if d["status"] != status:
                status = d["status"]
                spinner.update(f"deploy {deploy_id}: {status}")
            if status in SUCCEEDED or status in FAILED:  # deactivated: it went live, then was replaced
                break
            time.sleep(0.15)
    _print_events(c, deploy_id, after)
    if status not in SUCCEEDED:
        fail(
            f"deploy {deploy_id} {status}: {d.get('message') or ''}".rstrip(": "),
            f"the live release is unchanged; see 'slipstream deploys {d['service']}'",
        )
