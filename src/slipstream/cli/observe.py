"""``slipstream metrics`` and ``slipstream alerts``: what the platform measures and what it raised."""

from __future__ import annotations

import time

import typer

from slipstream.cli.common import FLAGS_ONLY, client, print_json, print_table

ALERT_KEYS = ("rule", "service", "state", "since", "value", "threshold", "message")


def metrics(
    service: str,
    since: str = typer.Option("1h", "--since", help="how far back: 15m, 1h, 24h, 7d (at most 14 days)"),
    as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON"),
) -> None:
    """SERVICE's requests/s, status classes, latency percentiles and instances, with sparklines."""
    report = client().get(f"/v1/services/{service}/metrics", since=since)
    text = report.pop("text", "")
    if as_json:
        print_json(report)
        return
    typer.echo(text, nl=not text.endswith("\n"))


def alerts(as_json: bool = typer.Option(False, "--json", help="print machine-readable JSON")) -> None:
    """Alerts firing now and resolved in the last day."""
    items = client().get("/v1/alerts")["alerts"]
    if as_json:
        print_json(items)
        return
    if not items:
        typer.echo("No alerts in the last day.")
        return

    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"

    print_table(
        ("state", "rule", "service", "since (UTC)", "value", "message"),
        (
            (a["state"], a["rule"], a.get("service") or "-", when(a.get("since")), str(a.get("value")), a["message"])
            for a in items
        ),
    )


def register(app: typer.Typer) -> None:
    """Add ``metrics`` and ``alerts`` to ``app``."""
    app.command()(metrics)
    app.command(context_settings=FLAGS_ONLY)(alerts)
