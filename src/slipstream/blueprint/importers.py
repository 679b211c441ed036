"""Importers: a Procfile or a fly.toml in, an equivalent render.yaml out. Pure.

``build_from_procfile`` and ``build_from_fly_toml`` return an :class:`Imported` (the render.yaml
data plus notes for everything without an equivalent); ``render_imported`` writes it as YAML with
those notes as comments at the top. The output is meant to be read and then validated with
``slipstream validate``; nothing is dropped without a note.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import yaml

from slipstream.blueprint.checks import DNS_LABEL, suggest_label
from slipstream.blueprint.problems import BlueprintError, Problem

BUILD_COMMANDS = {
    "python": "pip install -r requirements.txt",
    "node": "npm install",
    "ruby": "bundle install",
    "go": "go build -o app .",
    "rust": "cargo build --release",
    "elixir": "mix deps.get && mix compile",
}
_PROC_LINE = re.compile(r"([A-Za-z0-9_-]+)\s*:\s*(.*)")


@dataclass
class Imported:
    """render.yaml data and the notes for what has no equivalent."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _label(name: str, notes: list[str], what: str) -> str:
    if len(name) <= 63 and DNS_LABEL.fullmatch(name):
        return name
    label = suggest_label(name)
    notes.append(f"{what} '{name}' is not a valid service name; it was written as '{label}'")
    return label


def _fail(source: str, line: int, column: int, message: str, hint: str | None = None) -> BlueprintError:
    return BlueprintError([Problem(source, line, column, "", message, hint)])


def build_from_procfile(text: str, *, name: str, runtime: str = "python", source: str = "Procfile") -> Imported:
    """Translate Procfile process types into services: web -> web, release -> preDeployCommand,
    everything else -> worker."""
    notes: list[str] = []
    app = _label(name, notes, "the app name")
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROC_LINE.fullmatch(line)
        if not match or not match.group(2).strip():
            raise _fail(
                source, number, 1, f"'{line[:60]}' is not a Procfile line", "each line is 'process_type: command'"
            )
        if match.group(1) in processes:
            raise _fail(source, number, 1, f"process type '{match.group(1)}' appears twice")
        processes[match.group(1)] = match.group(2).strip()
    if not processes:
        raise _fail(source, 1, 1, "the Procfile declares no processes", "add a line such as 'web: gunicorn app:app'")
    release = processes.pop("release", None)
    services: list[dict[str, Any]] = []
    build = BUILD_COMMANDS.get(runtime)
    for proc, command in processes.items():
        service: dict[str, Any] = {
            "type": "web" if proc == "web" else "worker",
            "name": app if proc == "web" else _label(f"{app}-{proc.lower().replace('_', '-')}", notes, "process"),
        }
        service["runtime"] = runtime
        if build:
            service["buildCommand"] = build
        service["startCommand"] = command
        if proc == "web" and release:
            service["preDeployCommand"] = release
        if proc in ("clock", "scheduler"):
            notes.append(
                f"'{proc}' became a worker; if it only triggers jobs on a timetable, a "
                "'type: cron' service with a schedule is the Render way"
            )
        services.append(service)
    if release and "web" not in processes:
        services[0]["preDeployCommand"] = release
        notes.append("'release' became the preDeployCommand of the first service (there is no web process)")
    notes.append(
        "Heroku config vars are not in the Procfile: add them under envVars "
        "(use 'sync: false' for secrets, fromDatabase for DATABASE_URL)"
    )
    return Imported({"services": services}, notes)


def _seconds(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)?\s*", value)
        if match:
            n, unit = int(match.group(1)), match.group(2) or "s"
            return {"ms": n // 1000, "s": n, "m": n * 60, "h": n * 3600}[unit]
    return None


def _gigabytes(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(gb|mb)?\s*", value.lower())
        if match:
            n = int(match.group(1))
            return max(1, n if match.group(2) in (None, "gb") else -(-n // 1024))
    return None


def build_from_fly_toml(text: str, *, source: str = "fly.toml", name: str = "app") -> Imported:
    """Translate a fly.toml into services (one per process group) with notes for the rest."""
    try:
        fly = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+), column (\d+)", str(exc))
        line, col = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        raise _fail(source, line, col, f"invalid TOML: {str(exc).split(' (at')[0]}") from None
    notes: list[str] = []
    app = _label(str(fly.get("app") or name), notes, "the app name")
    base: dict[str, Any] = {}
    build: dict[str, Any] = fly["build"] if isinstance(fly.get("build"), dict) else {}
    if build.get("image"):
        base["runtime"] = "image"
        base["image"] = {"url": str(build["image"])}
    else:
        base["runtime"] = "docker"
        if build.get("dockerfile"):
            base["dockerfilePath"] = str(build["dockerfile"])
    if build.get("builder") or build.get("buildpacks"):
        notes.append(
            "[build] uses buildpacks; Render has no buildpack builds: pick a native runtime "
            "(python, node, ...) with a buildCommand, or add a Dockerfile"
        )
    if build.get("args"):
        notes.append("[build.args] have no blueprint equivalent; pass them as ARG defaults in the Dockerfile")
    deploy: dict[str, Any] = fly["deploy"] if isinstance(fly.get("deploy"), dict) else {}
    release = str(deploy["release_command"]) if deploy.get("release_command") else None
    if deploy.get("strategy"):
        notes.append(
            f"[deploy] strategy = '{deploy['strategy']}': slipstream always starts the new "
            "release, health-checks it, then switches (stop-first for services with a disk)"
        )
    kill = _seconds(fly.get("kill_timeout"))
    if kill is not None:
        base["maxShutdownDelaySeconds"] = min(300, max(1, kill))
        if not 1 <= kill <= 300:
            notes.append(
                f"kill_timeout {fly['kill_timeout']} was clamped to {base['maxShutdownDelaySeconds']} s "
                "(the allowed range is 1 to 300)"
            )
    if fly.get("kill_signal") and str(fly["kill_signal"]).upper() != "SIGTERM":
        notes.append(f"kill_signal = {fly['kill_signal']}: services are stopped with SIGTERM here")
    env: dict[str, Any] = fly["env"] if isinstance(fly.get("env"), dict) else {}
    env_vars = [{"key": str(k), "value": _text(v)} for k, v in env.items()]
    http = fly.get("http_service") if isinstance(fly.get("http_service"), dict) else None
    old_services = (
        [s for s in fly.get("services", []) if isinstance(s, dict)] if isinstance(fly.get("services"), list) else []
    )
    web_groups, port, health = _web_facts(http, old_services, notes)
    port_var: list[dict[str, str]] = []
    if port is not None and port != 10000:
        port_var.append({"key": "PORT", "value": str(port)})
        env_vars.extend(port_var)
        notes.append(f"the app listened on internal_port {port}; PORT is set to it (better: bind to $PORT)")
    processes = fly.get("processes") if isinstance(fly.get("processes"), dict) else {}
    groups = processes or {"app": None}
    services: list[dict[str, Any]] = []
    for group, command in groups.items():
        is_web = group in web_groups or (not processes and (http is not None or old_services))
        svc: dict[str, Any] = {
            "type": "web" if is_web else "worker",
            "name": app
            if not processes or (is_web and not any(s["type"] == "web" for s in services))
            else _label(f"{app}-{str(group).lower().replace('_', '-')}", notes, "process group"),
        }
        svc.update(base)
        if command:
            svc["dockerCommand"] = str(command)
        if release and not services:
            svc["preDeployCommand"] = release
        if is_web and health:
            svc["healthCheckPath"] = health
        wanted = [e for e in env_vars if is_web or e not in port_var]
        if wanted:
            svc["envVars"] = [dict(e) for e in wanted]
        services.append(svc)
    if release and len(services) > 1:
        notes.append(f"release_command runs once per deploy of '{services[0]['name']}' (its preDeployCommand)")
    _mounts(fly, services, notes)
    _leftover_notes(fly, notes)
    notes.append("fly secrets are not in fly.toml: add each one under envVars with 'sync: false'")
    return Imported({"services": services}, notes)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _web_facts(
    http: dict[str, Any] | None, old: list[dict[str, Any]], notes: list[str]
) -> tuple[set[str], int | None, str | None]:
    groups: set[str] = set()
    port: int | None = None
    health: str | None = None
    if http is not None:
        groups |= set(http.get("processes") or ["app"])
        port = http.get("internal_port") if isinstance(http.get("internal_port"), int) else None
        for check in http.get("checks") or []:
            if isinstance(check, dict) and isinstance(check.get("path"), str) and health is None:
                health = check["path"]
        for key in (
            "auto_stop_machines",
            "auto_start_machines",
            "min_machines_running",
            "concurrency",
            "force_https",
            "tls_options",
        ):
            if key in http:
                notes.append(
                    f"[http_service] {key} has no equivalent: slipstream keeps instances running "
                    "and serves plain HTTP on loopback"
                )
    for svc in old:
        groups |= set(svc.get("processes") or ["app"])
        if port is None and isinstance(svc.get("internal_port"), int):
            port = svc["internal_port"]
        for check in svc.get("http_checks") or []:
            if isinstance(check, dict) and isinstance(check.get("path"), str) and health is None:
                health = check["path"]
        if svc.get("protocol", "tcp") != "tcp" or any(
            "tls" in (p.get("handlers") or []) for p in svc.get("ports") or [] if isinstance(p, dict)
        ):
            notes.append("[[services]] ports and handlers have no equivalent: a web service gets HTTP")
    if old:
        notes.append("[[services]] became web services; only the first internal_port is used")
    return groups, port, health


def _mounts(fly: dict[str, Any], services: list[dict[str, Any]], notes: list[str]) -> None:
    mounts = fly.get("mounts")
    items = [mounts] if isinstance(mounts, dict) else [m for m in mounts or [] if isinstance(m, dict)]
    for mount in items:
        target = services[0]
        if "disk" in target:
            notes.append(f"volume '{mount.get('source')}' was not added: a service has one disk")
            continue
        disk: dict[str, Any] = {
            "name": str(mount.get("source") or "data"),
            "mountPath": str(mount.get("destination") or "/data"),
        }
        size = _gigabytes(mount.get("initial_size"))
        if size:
            disk["sizeGB"] = size
        target["disk"] = disk
        notes.append(
            f"volume '{disk['name']}' became the disk of '{target['name']}'; a service with a "
            "disk stops its old instance before starting the new one"
        )


_HANDLED = {
    "app",
    "build",
    "deploy",
    "kill_timeout",
    "kill_signal",
    "env",
    "http_service",
    "services",
    "processes",
    "mounts",
}


def _leftover_notes(fly: dict[str, Any], notes: list[str]) -> None:
    explain = {
        "primary_region": "slipstream runs everything on one machine",
        "vm": "pick a plan instead (plans set the memory limit)",
        "statics": "serve static files from the app, or add a 'runtime: static' site",
        "metrics": "slipstream collects its own metrics",
        "checks": "top-level checks only observe; healthCheckPath gates deploys",
        "experimental": "no equivalent",
        "swap_size_mb": "no equivalent",
        "console_command": "use 'slipstream' commands on the machine",
    }
    for key, value in fly.items():
        if key in _HANDLED:
            continue
        shown = value if not isinstance(value, (dict, list)) else "[...]"
        notes.append(f"{key} = {shown!s:.60}: {explain.get(key, 'not translated')}")


def render_imported(imported: Imported, source: str) -> str:
    """Write the imported data as render.yaml text, notes first as comments."""
    lines = [
        f"# render.yaml written by 'slipstream import {source}'.",
        "# Review it, then run 'slipstream validate render.yaml'.",
    ]
    if imported.notes:
        lines.append("#")
        lines.append("# Not translated (no equivalent, or needs your decision):")
        for note in imported.notes:
            lines.append("# - " + " ".join(note.split()))
    body = yaml.safe_dump(imported.document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body
