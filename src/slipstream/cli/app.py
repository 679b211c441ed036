"""The ``slipstream`` Typer app. Talks only to the daemon's API (except ``up``, which starts it).
``slipstream.cli.main`` imports it for every command the fast path (``cli.fast``) does not answer.

Errors print as one ``Error: ...`` line on stderr with exit 1; usage errors exit 2 (Typer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from slipstream.cli import blueprint_cmds, fast, observe, resources
from slipstream.cli.client import Client
from slipstream.cli.common import (
    FLAGS_ONLY,
    client,
    fail,
    pick,
    print_json,
    print_table,
    settings,
    wait_for_deploy,
)
from slipstream.cli.db import db_app
from slipstream.cli.env import env_app
from slipstream.cli.kv import kv_app
from slipstream.cli.resources import project_app
from slipstream.cli.tokens import tokens_app
from slipstream.errors import SlipstreamError


class _Slipstream(TyperGroup):
    """The top-level group: an expected failure (a :class:`SlipstreamError`) becomes ``fail``."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer may vendor click: no import of its own)
        try:
            return super().invoke(ctx)
        except SlipstreamError as exc:
            fail(exc.message, exc.hint)


app = typer.Typer(
    cls=_Slipstream,
    context_settings=FLAGS_ONLY,
    help="slipstream: deploy a render.yaml on your own machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(env_app, name="env")
app.add_typer(kv_app, name="kv")
app.add_typer(project_app, name="project")
app.add_typer(tokens_app, name="tokens")
resources.register(app)
observe.register(app)

PROJECT_HELP = "the project this blueprint belongs to (default: its repository's directory name)"


@app.command(context_settings=FLAGS_ONLY)
def up(detach: bool = typer.Option(False, "--detach", "-d", help="run in the background")) -> None:
    """Start the slipstream daemon (foreground unless --detach)."""
    conf = settings()
    if conf.api_url is not None:
        fail(f"'up' starts a daemon on this machine, but SLIPSTREAM_API_URL points at {conf.api_url}", "unset it")
    if not detach:
        from slipstream.daemon import run_daemon

        try:
            run_daemon(conf)
        except SlipstreamError as exc:
            fail(exc.message, exc.hint)
        except KeyboardInterrupt:
            pass
        return
    c = Client(conf)
    if c.alive():
        typer.echo(f"slipstream is already running ({conf.api_socket})")
        return
    conf.ensure_dirs()
    with open(os.open(conf.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slipstream", "up"],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = conf.daemon_log.read_text(errors="replace").strip().splitlines()
            last = next((ln for ln in reversed(lines) if ln.startswith("Error:")), lines[-1] if lines else "")
            fail(f"the daemon exited at start: {last.removeprefix('Error: ')}", f"see {conf.daemon_log}")
        if c.alive():
            typer.echo(
                f"slipstream is running (pid {proc.pid}); web services answer at "
                f"http://<service>.localhost:{conf.http_port}"
            )
            return
        time.sleep(0.1)
    fail("the daemon did not answer within 30 s", f"see {conf.daemon_log}")


@app.command(context_settings=FLAGS_ONLY)
def down() -> None:
    """Stop the daemon and everything it started (instances, HAProxy, PostgreSQL)."""
    c = client()
    if not c.alive():
        typer.echo("slipstream is not running")
        return
    pid = c.get("/v1/health")["pid"]
    c.post("/v1/shutdown", {"everything": True})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if c.remote:  # another machine's daemon: stopped once it no longer answers
                c.get("/v1/health")
            else:
                os.kill(pid, 0)
        except (ProcessLookupError, SlipstreamError):
            typer.echo("slipstream stopped")
            return
        time.sleep(0.1)
    fail(f"the daemon (pid {pid}) did not stop within 60 s")


@app.command()
def deploy(
    service: str,
    commit: str | None = typer.Option(None, "--commit", help="git commit or ref to deploy"),
    from_dir: Path | None = typer.Option(None, "--from-dir", help="deploy a snapshot of a directory"),
    blueprint: Path | None = typer.Option(
        None, "--blueprint", "-f", help="render.yaml (default: ./render.yaml or the last one used)"
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help="return once queued"),
    project: str | None = typer.Option(None, "--project", help=PROJECT_HELP),
) -> None:
    """Build and deploy SERVICE with a health-gated, zero-downtime flip."""
    c = client()
    if blueprint is None and not c.remote and Path("render.yaml").exists():
        blueprint = Path("render.yaml")
    body = {
        "service": service,
        "commit": commit,
        "blueprint": c.daemon_path(blueprint) if blueprint else None,
        "from_dir": c.daemon_path(from_dir) if from_dir else None,
        "project": project,
    }
    d = c.post("/v1/deploys", body)["deploy"]
    if no_wait:
        typer.echo(f"deploy {d['id']} queued")
        return
    wait_for_deploy(c, d)


@app.command()
def apply(
    blueprint: Path = typer.Argument(Path("render.yaml"), help="the blueprint to converge to"),
    project: str | None = typer.Option(None, "--project", help=PROJECT_HELP),
) -> None:
    """Deploy every service of a blueprint (each through the same gated flip); deletes nothing."""
    c = client()
    result = c.post("/v1/apply", {"blueprint": c.daemon_path(blueprint), "project": project})
    typer.echo(f"Applying {blueprint} to project {result['project']}")
    for w in result["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    for s in result["skipped"]:
        typer.echo(f"skipped {s['service']}: {s['reason']}", err=True)
    failed = []
    for d in result["deploys"]:
        try:
            wait_for_deploy(c, d)
        except typer.Exit:
            failed.append(d["service"])
    services = {s["name"]: s for s in c.get("/v1/status")["services"]}
    for d in result["deploys"]:
        s = services.get(d["service"], {})
        if d["service"] not in failed:
            typer.echo(f"{d['service']}: {s.get('url') or s.get('type', '')}")
    if failed:
        fail(f"deploys failed for: {', '.join(failed)}")


@app.command()
def rollback(
    service: str,
    to: int | None = typer.Option(None, "--to", help="deploy id to return to (default: the previous one)"),
    with_pre_deploy: bool = typer.Option(False, "--with-pre-deploy", help="run preDeployCommand again"),
) -> None:
    """Redeploy an earlier successful build of SERVICE (no rebuild)."""
    c = client()
    d = c.post(f"/v1/services/{service}/rollback", {"to": to, "with_pre_deploy": with_pre_deploy})["deploy"]
    typer.echo(f"Rolling back {service} ({d['source']}). Database changes are not reverted by a rollback.")
    wait_for_deploy(c, d)


def _fmt_steps(steps: dict[str, float]) -> str:
    order = ["build", "pre_deploy", "start", "health", "flip", "settle", "drain"]
    return " ".join(f"{k}={steps[k]:.2f}s" for k in order if k in steps)


JSON_HELP = "print machine-readable JSON"


@app.command()
def deploys(
    service: str,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    limit: int = typer.Option(20, "-n"),
) -> None:
    """List SERVICE's deploys with status and per-step durations."""
    items = client().get(f"/v1/services/{service}/deploys", limit=limit)["deploys"]
    if as_json:
        print_json(items)
        return
    print_table(
        ("id", "kind", "status", "commit", "steps", "message"),
        (
            (
                str(d["id"]),
                d["kind"],
                d["status"],
                (d["commit"] or "-")[:12],
                _fmt_steps(d["steps"]),
                d["message"] or "",
            )
            for d in items
        ),
    )


@app.command(context_settings=FLAGS_ONLY)
def status(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Services, their live deploy, instances and URLs."""
    data = client().get("/v1/status")
    if as_json:
        print_json(data)
        return
    if not data["services"]:
        typer.echo(fast.NO_SERVICES)
        return
    print_table(fast.STATUS_COLUMNS, fast.status_rows(data))


RUN_KEYS = ("id", "trigger", "status", "exit_code", "started_at", "finished_at")


@app.command()
def jobs(
    args: list[str] = typer.Argument(..., metavar="[run] NAME"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """'jobs NAME' lists a cron job's runs; 'jobs run NAME' starts one now (or right after the running one)."""
    if not (len(args) == 1 or (len(args) == 2 and args[0] == "run")):
        fail("usage: slipstream jobs NAME | slipstream jobs run NAME")
    c = client()
    if len(args) == 2:
        state = c.post(f"/v1/services/{args[1]}/runs")["run"]
        if as_json:
            print_json({"service": args[1], "run": state})
            return
        typer.echo(
            f"run of {args[1]} {state}" + (" (it starts when the running one ends)" if state == "delayed" else "")
        )
        return
    runs = c.get(f"/v1/services/{args[0]}/runs")["runs"]
    if as_json:
        print_json([pick(r, RUN_KEYS) for r in runs])
        return
    print_table(("run", "trigger", "status", "exit", "started (UTC)", "duration"), (_run_row(r) for r in runs))


def _run_row(r: dict[str, Any]) -> tuple[str, ...]:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started_at"]))
    took = f"{r['finished_at'] - r['started_at']:.1f}s" if r["finished_at"] else "running"
    exit_code = str(r["exit_code"] if r["exit_code"] is not None else "-")
    return (str(r["id"]), r["trigger"], r["status"], exit_code, started, took)


@app.command()
def logs(
    service: str,
    follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines (across deploys)"),
    n: int = typer.Option(100, "-n", help="how many lines (the newest)"),
    since: str | None = typer.Option(None, "--since", help="15m, 2h, 1d, or a time (2026-12-02 13:00)"),
    until: str | None = typer.Option(None, "--until", help="same forms as --since"),
    grep: str | None = typer.Option(None, "--grep", help="text (any case), or /regex/ (/regex/i)"),
    level: str | None = typer.Option(None, "--level", help="this level and worse: debug, info, warn, error"),
    deploy: int | None = typer.Option(None, "--deploy", help="only lines of this deploy"),
    instance: str | None = typer.Option(None, "--instance", help="only this instance (e.g. web-d12-1)"),
    build: bool = typer.Option(False, "--build", help="the build logs instead of the app's"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object a line (time, service, stream, ...)"),
) -> None:
    """Search and follow SERVICE's logs: its instances, pre-deploy and cron runs, platform events
    (secrets masked)."""

    def show(lines: list[dict[str, Any]]) -> None:
        for line in lines:
            if as_json:
                print_json(line, indent=None)
            else:
                typer.echo(fast.log_text(line))

    c = client()
    params = {"since": since, "until": until, "grep": grep, "level": level, "deploy": deploy, "instance": instance}
    params = {k: v for k, v in params.items() if v is not None}
    if build:
        params["build"] = "true"
    data = c.get(f"/v1/services/{service}/logs", n=n, **params)
    show(data["lines"])
    cursor = data["cursor"]
    try:
        while follow and cursor is not None:
            time.sleep(0.5)
            data = c.get(f"/v1/services/{service}/logs", n=1000, after=cursor, **params)
            show(data["lines"])
            cursor = data["cursor"]
    except KeyboardInterrupt:
        pass


def current_state(blueprint: Path, project: str | None) -> dict[str, Any]:
    """The daemon's view for 'plan' (the blueprint's project only); empty when slipstream is not running."""
    c = client()
    if not c.alive():
        return {}
    return c.get("/v1/plan-state", project=project, blueprint=str(blueprint.resolve()))


blueprint_cmds.register(app, current_state)
