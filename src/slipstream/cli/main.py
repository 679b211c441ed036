"""The ``slipstream`` command. Talks only to the daemon's API (except ``up``, which starts it).

Errors print as one ``Error: ...`` line on stderr with exit 1; usage errors exit 2 (Typer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from slipstream.cli.client import Client
from slipstream.errors import SlipstreamError
from slipstream.settings import SettingsError, load_settings

app = typer.Typer(
    help="slipstream: deploy a render.yaml on your own machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# piped output (scripts, tests) gets wide lines instead of Rich's 80-column default
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)

FAILED = {"build_failed", "pre_deploy_failed", "update_failed", "canceled"}


def fail(message: str, hint: str | None = None) -> None:
    err.print(f"[red]Error:[/red] {message}", markup=True, soft_wrap=True)
    if hint:
        err.print(f"  {hint}", soft_wrap=True)
    raise typer.Exit(1)


def client() -> Client:
    try:
        return Client(load_settings())
    except SettingsError as exc:
        fail(str(exc))
        raise  # unreachable


def wait_for_deploy(c: Client, deploy: dict[str, Any]) -> None:
    """Print the deploy's transcript as it happens; exit 0 when live, 1 when it failed."""
    deploy_id, after, status = deploy["id"], 0, deploy["status"]
    with err.status(f"deploy {deploy_id}: {status}") as spinner:
        while True:
            for ev in c.get(f"/v1/deploys/{deploy_id}/events", after=after)["events"]:
                after = ev["id"]
                prefix = "       " if ev["kind"] in ("build", "pre_deploy", "app") else ""
                out.print(prefix + ev["message"], markup=False, soft_wrap=True)
            d = c.get(f"/v1/deploys/{deploy_id}")["deploy"]
            if d["status"] != status:
                status = d["status"]
                spinner.update(f"deploy {deploy_id}: {status}")
            if status == "live" or status in FAILED:
                break
            time.sleep(0.15)
    for ev in c.get(f"/v1/deploys/{deploy_id}/events", after=after)["events"]:
        out.print(ev["message"], markup=False, soft_wrap=True)
    if status != "live":
        fail(
            f"deploy {deploy_id} {status}: {d.get('message') or ''}".rstrip(": "),
            f"the live release is unchanged; see 'slipstream deploys {d['service']}'",
        )


@app.command()
def up(detach: bool = typer.Option(False, "--detach", "-d", help="run in the background")) -> None:
    """Start the slipstream daemon (foreground unless --detach)."""
    settings = load_settings()
    if not detach:
        from slipstream.daemon import run_daemon

        try:
            run_daemon(settings)
        except SlipstreamError as exc:
            fail(exc.message, exc.hint)
        except KeyboardInterrupt:
            pass
        return
    c = Client(settings)
    if c.alive():
        out.print(f"slipstream is already running ({settings.api_socket})")
        return
    settings.ensure_dirs()
    with open(settings.daemon_log, "ab") as logf:
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
            lines = settings.daemon_log.read_text(errors="replace").strip().splitlines()
            last = next((ln for ln in reversed(lines) if ln.startswith("Error:")), lines[-1] if lines else "")
            fail(f"the daemon exited at start: {last.removeprefix('Error: ')}", f"see {settings.daemon_log}")
        if c.alive():
            out.print(
                f"slipstream is running (pid {proc.pid}); web services answer at "
                f"http://<service>.localhost:{settings.http_port}"
            )
            return
        time.sleep(0.1)
    fail("the daemon did not answer within 30 s", f"see {settings.daemon_log}")


@app.command()
def down() -> None:
    """Stop the daemon and everything it started (instances, HAProxy, PostgreSQL)."""
    settings = load_settings()
    c = Client(settings)
    if not c.alive():
        out.print("slipstream is not running")
        return
    pid = c.get("/v1/health")["pid"]
    c.post("/v1/shutdown", {"everything": True})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            out.print("slipstream stopped")
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
) -> None:
    """Build and deploy SERVICE with a health-gated, zero-downtime flip."""
    if blueprint is None and Path("render.yaml").exists():
        blueprint = Path("render.yaml")
    c = client()
    body = {
        "service": service,
        "commit": commit,
        "blueprint": str(blueprint.resolve()) if blueprint else None,
        "from_dir": str(from_dir.resolve()) if from_dir else None,
    }
    d = c.post("/v1/deploys", body)["deploy"]
    if no_wait:
        out.print(f"deploy {d['id']} queued")
        return
    wait_for_deploy(c, d)


@app.command()
def apply(blueprint: Path = typer.Argument(Path("render.yaml"), help="the blueprint to converge to")) -> None:
    """Deploy every service of a blueprint (each through the same gated flip)."""
    c = client()
    result = c.post("/v1/apply", {"blueprint": str(blueprint.resolve())})
    for w in result["warnings"]:
        err.print(f"warning: {w}", markup=False, soft_wrap=True)
    for s in result["skipped"]:
        err.print(f"skipped {s['service']}: {s['reason']}", markup=False)
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
            out.print(f"{d['service']}: {s.get('url') or s.get('type', '')}")
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
    out.print(f"Rolling back {service} ({d['source']}). Database changes are not reverted by a rollback.")
    wait_for_deploy(c, d)


def _fmt_steps(steps: dict[str, float]) -> str:
    order = ["build", "pre_deploy", "start", "health", "flip", "settle", "drain"]
    return " ".join(f"{k}={steps[k]:.2f}s" for k in order if k in steps)


@app.command()
def deploys(service: str, as_json: bool = typer.Option(False, "--json"), limit: int = typer.Option(20, "-n")) -> None:
    """List SERVICE's deploys with status and per-step durations."""
    items = client().get(f"/v1/services/{service}/deploys", limit=limit)["deploys"]
    if as_json:
        out.print_json(json.dumps(items))
        return
    t = Table("id", "kind", "status", "commit", "steps", "message")
    for d in items:
        t.add_row(
            str(d["id"]), d["kind"], d["status"], (d["commit"] or "-")[:12], _fmt_steps(d["steps"]), d["message"] or ""
        )
    out.print(t)


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Services, their live deploy, instances and URLs."""
    data = client().get("/v1/status")
    if as_json:
        out.print_json(json.dumps(data))
        return
    if not data["services"]:
        out.print("No services yet. Deploy one with 'slipstream deploy NAME --blueprint render.yaml'.")
        return
    t = Table("service", "live deploy", "url", "instances")
    for s in data["services"]:
        live = s["live_deploy"]
        inst = (
            "; ".join(
                f"{i['id']} {i['state']}/{i.get('process', '?')} pid={i.get('pid')} restarts={i.get('restarts', 0)}"
                + (f" next restart in {i['next_restart_in_s']:.1f}s" if i.get("next_restart_in_s") else "")
                for i in s["instances"]
            )
            or "-"
        )
        live_s = f"{live['id']} ({live['status']}, {(live['commit'] or 'dir')[:12]})" if live else "-"
        if s["active_deploy"]:
            live_s += f"; deploy {s['active_deploy']['id']} {s['active_deploy']['status']}"
        t.add_row(s["name"], live_s, s["url"] or f"({s['type']})", inst)
    out.print(t)


@app.command()
def jobs(args: list[str] = typer.Argument(..., metavar="[run] NAME")) -> None:
    """'jobs NAME' lists a cron job's runs; 'jobs run NAME' starts one now (or right after the running one)."""
    c = client()
    if args[0] == "run" and len(args) == 2:
        state = c.post(f"/v1/services/{args[1]}/runs")["run"]
        out.print(
            f"run of {args[1]} {state}" + (" (it starts when the running one ends)" if state == "delayed" else "")
        )
        return
    if len(args) != 1:
        fail("usage: slipstream jobs NAME | slipstream jobs run NAME")
    t = Table("run", "trigger", "status", "exit", "started (UTC)", "duration")
    for r in c.get(f"/v1/services/{args[0]}/runs")["runs"]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started_at"]))
        took = f"{r['finished_at'] - r['started_at']:.1f}s" if r["finished_at"] else "running"
        t.add_row(
            str(r["id"]),
            r["trigger"],
            r["status"],
            str(r["exit_code"] if r["exit_code"] is not None else "-"),
            started,
            took,
        )
    out.print(t)


@app.command()
def logs(
    service: str,
    follow: bool = typer.Option(False, "-f", "--follow"),
    n: int = typer.Option(100, "-n", help="lines to show"),
) -> None:
    """Show SERVICE's instance logs (secrets masked)."""
    c = client()
    data = c.get(f"/v1/services/{service}/logs", n=n)
    for line in data["lines"]:
        out.print(line, markup=False, soft_wrap=True)
    cursor = data["cursor"]
    try:
        while follow:
            time.sleep(0.5)
            data = c.get(f"/v1/services/{service}/logs", cursor=json.dumps(cursor))
            for line in data["lines"]:
                out.print(line, markup=False, soft_wrap=True)
            cursor = {**cursor, **data["cursor"]}
    except KeyboardInterrupt:
        pass


def _register_subcommands() -> None:
    from slipstream.cli.db import db_app
    from slipstream.cli.env import env_app

    app.add_typer(db_app, name="db")
    app.add_typer(env_app, name="env")


_register_subcommands()


def _register_optional() -> None:
    try:
        from slipstream.cli import blueprint_cmds
    except ImportError:
        return

    def current_state() -> dict[str, Any]:
        """The daemon's view for 'plan'; an empty state when slipstream is not running."""
        c = Client(load_settings())
        return c.get("/v1/plan-state") if c.alive() else {}

    blueprint_cmds.register(app, current_state)


_register_optional()


def main() -> None:
    """Entry point: expected failures become one line and exit 1, never a traceback."""
    try:
        app()
    except SlipstreamError as exc:
        err.print(f"[red]Error:[/red] {exc.message}", soft_wrap=True)
        if exc.hint:
            err.print(f"  {exc.hint}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
