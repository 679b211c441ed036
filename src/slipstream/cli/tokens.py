"""``slipstream tokens ...``: bearer tokens for the API's TCP listener (``SLIPSTREAM_API_LISTEN``).

Managing tokens needs the local socket or an admin token. ``create`` prints the token alone on
stdout (so ``TOKEN=$(slipstream tokens create ci --scope deploy)`` works) and how to use it on
stderr; it is never shown again.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from slipstream.cli.common import FLAGS_ONLY, client, fail, pick, print_json, print_table

tokens_app = typer.Typer(
    help="Tokens for the remote API (SLIPSTREAM_API_LISTEN).", no_args_is_help=True, context_settings=FLAGS_ONLY
)

TOKEN_KEYS = ("id", "name", "scope", "created_at", "last_used_at")


@tokens_app.command()
def create(
    name: str,
    scope: str = typer.Option(..., "--scope", help="read (GET only), deploy (read + deploys), admin (everything)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON (holds the token)"),
) -> None:
    """Create a token NAME with a scope; the token is printed once, here."""
    made = client().post("/v1/tokens", {"name": name, "scope": scope})
    if as_json:
        print_json(made)
        return
    typer.echo(made["token"])
    listener = client().get("/v1/tokens").get("listener")
    lines = [f"token {made['name']!r} (id {made['id']}, scope {made['scope']}): shown only now, keep it secret"]
    if listener is None:
        lines.append("this daemon has no TCP listener yet: set SLIPSTREAM_API_LISTEN=host:port and restart it")
    else:
        lines += [
            "use it from another machine:",
            f"  export SLIPSTREAM_API_URL={listener['url']}",
            "  export SLIPSTREAM_TOKEN=<the token above>",
        ]
        if listener.get("ca_fingerprint"):
            lines.append(
                "  export SLIPSTREAM_API_CA=ca.crt   # from 'slipstream tokens ca > ca.crt' here; "
                f"SHA-256 {listener['ca_fingerprint']}"
            )
    for line in lines:
        typer.echo(line, err=True)


@tokens_app.command("list", context_settings=FLAGS_ONLY)
def list_(as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON")) -> None:
    """The tokens (never their text), and the listener's URL and CA fingerprint."""
    data = client().get("/v1/tokens")
    if as_json:
        listener = data["listener"]
        if listener:
            listener = {k: listener[k] for k in ("url", "ca_file", "ca_fingerprint")}
        print_json({"tokens": [pick(t, TOKEN_KEYS) for t in data["tokens"]], "listener": listener})
        return
    if data["tokens"]:
        print_table(("id", "name", "scope", "created (UTC)", "last used (UTC)"), (_row(t) for t in data["tokens"]))
    else:
        typer.echo("No tokens. Create one with 'slipstream tokens create NAME --scope read|deploy|admin'.")
    listener = data["listener"]
    if listener is None:
        typer.echo("No TCP listener: set SLIPSTREAM_API_LISTEN=host:port and restart the daemon.")
    else:
        typer.echo(f"API: {listener['url']}")
        if listener.get("ca_fingerprint"):
            typer.echo(f"CA: {listener['ca_file']} (SHA-256 {listener['ca_fingerprint']})")


@tokens_app.command()
def revoke(name: str = typer.Argument(..., metavar="NAME|ID")) -> None:
    """Revoke a token: requests with it fail from now on."""
    gone = client().request("DELETE", f"/v1/tokens/{name}")["revoked"]
    typer.echo(f"revoked token {gone['name']!r} (id {gone['id']}, scope {gone['scope']})")


@tokens_app.command(context_settings=FLAGS_ONLY)
def ca() -> None:
    """Print the CA certificate (PEM) a remote CLI trusts with SLIPSTREAM_API_CA."""
    listener = client().get("/v1/api/listener")
    if not listener.get("ca_pem"):
        fail(f"the listener at {listener['url']} uses an operator-given certificate", "trust the CA that issued it")
    typer.echo(listener["ca_pem"], nl=False)


def _row(t: dict[str, Any]) -> tuple[str, ...]:
    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"

    return (t["id"], t["name"], t["scope"], when(t["created_at"]), when(t["last_used_at"]))
