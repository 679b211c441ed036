"""A fly.toml in, services out: one per process group, with notes for what has no equivalent."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from slipstream.blueprint.envcheck import ENV_KEY
from slipstream.blueprint.importers.common import Imported, Names, fail, unique
from slipstream.blueprint.importers.runtimes import build_command, runtime_of_command, runtime_of_files

# Memory of Fly's machine presets, in MB (a [[vm]] 'memory' overrides it).
FLY_SIZES_MB = {
    "shared-cpu-1x": 256,
    "shared-cpu-2x": 512,
    "shared-cpu-4x": 1024,
    "shared-cpu-8x": 2048,
    "performance-1x": 2048,
    "performance-2x": 4096,
    "performance-4x": 8192,
    "performance-8x": 16384,
    "performance-16x": 32768,
}
MIN_MEMORY_MB = 32  # the smallest memoryLimitMB the model takes


def _seconds(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)?\s*", value)
        if match:
            n, unit = int(match.group(1)), match.group(2) or "s"
            return {"ms": n // 1000, "s": n, "m": n * 60, "h": n * 3600}[unit]
    return None


def _megabytes(value: Any) -> int | None:
    """Fly's memory sizes: a number of MB, or text such as '256mb', '1gb', '2048'."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(mb|m|mib|gb|g|gib)?\s*", value.lower())
        if match:
            n = float(match.group(1))
            return int(n * 1024) if (match.group(2) or "mb").startswith("g") else int(n)
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


def _tables(value: Any) -> list[dict[str, Any]]:
    """A TOML table or array of tables as a list of tables (anything else: empty)."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _applies(table: dict[str, Any], group: str) -> bool:
    """True when a table with an optional ``processes`` list applies to process group ``group``."""
    procs = table.get("processes")
    return not isinstance(procs, list) or not procs or group in procs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class _Web:
    """What fly.toml says about the process groups that take HTTP traffic."""

    groups: set[str] = field(default_factory=set)
    port: int | None = None
    health: str | None = None
    min_running: dict[str, int] = field(default_factory=dict)


def _web_facts(fly: dict[str, Any], notes: list[str]) -> _Web:
    web = _Web()
    http = fly.get("http_service") if isinstance(fly.get("http_service"), dict) else None
    old = _tables(fly.get("services"))
    for svc in ([http] if http else []) + old:
        procs = svc.get("processes") if isinstance(svc.get("processes"), list) else ["app"]
        web.groups |= {str(p) for p in procs}
        if web.port is None and isinstance(svc.get("internal_port"), int):
            web.port = svc["internal_port"]
        for check in _tables(svc.get("checks")) + _tables(svc.get("http_checks")):
            if web.health is None and isinstance(check.get("path"), str) and check["path"].startswith("/"):
                web.health = check["path"]
            timing = [k for k in ("grace_period", "interval", "timeout") if k in check]
            if timing:
                notes.append(
                    f"health check {', '.join(timing)} have no equivalent: Render and slipstream poll "
                    "healthCheckPath on their own schedule"
                )
        running = svc.get("min_machines_running")
        if isinstance(running, int) and not isinstance(running, bool) and running >= 2:
            web.min_running.update(dict.fromkeys((str(p) for p in procs), min(running, 100)))
    if http is not None:
        for key in ("auto_stop_machines", "auto_start_machines", "concurrency", "force_https", "tls_options"):
            if key in http:
                notes.append(
                    f"[http_service] {key} has no equivalent: slipstream keeps instances running "
                    "and serves plain HTTP on loopback"
                )
    for svc in old:
        if svc.get("protocol", "tcp") != "tcp" or any(
            "tls" in (p.get("handlers") or []) for p in _tables(svc.get("ports"))
        ):
            notes.append("[[services]] ports and handlers have no equivalent: a web service gets HTTP")
    if old:
        notes.append("[[services]] became web services; only the first internal_port is used")
    if web.health is None:
        for check_name, check in (fly.get("checks") or {}).items() if isinstance(fly.get("checks"), dict) else []:
            if isinstance(check, dict) and check.get("type") == "http" and str(check.get("path", "")).startswith("/"):
                web.health = str(check["path"])
                notes.append(
                    f"[checks.{check_name}] only observed the app on Fly; its path {web.health} became the "
                    "healthCheckPath, which gates deploys here"
                )
                break
    return web


def _memory_of(fly: dict[str, Any], group: str, notes: list[str]) -> int | None:
    """The memory of the machines of ``group`` per [[vm]], in MB."""
    memory = None
    for vm in _tables(fly.get("vm")):
        if not _applies(vm, group):
            continue
        size = FLY_SIZES_MB.get(str(vm.get("size", "")).lower())
        given = _megabytes(vm.get("memory")) or _megabytes(vm.get("memory_mb"))
        memory = given or size or memory
        for key in ("cpus", "cpu_kind", "gpus", "gpu_kind"):
            if key in vm:
                notes.append(f"[[vm]] {key} = {vm[key]!s:.30} has no equivalent: instances share this machine's CPUs")
    if memory is not None and memory < MIN_MEMORY_MB:
        notes.append(f"[[vm]] memory {memory} MB is below {MIN_MEMORY_MB} MB; no memoryLimitMB was set")
        return None
    return memory


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+), column (\d+)", str(exc))
        line, col = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        raise fail(source, line, col, f"invalid TOML: {str(exc).split(' (at')[0]}") from None


def _env_vars(fly: dict[str, Any], web: _Web, notes: list[str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(entries for every service, entries for web services only) from [env] and internal_port."""
    env: dict[str, Any] = fly["env"] if isinstance(fly.get("env"), dict) else {}
    shared: list[dict[str, str]] = []
    for key, value in env.items():
        if ENV_KEY.fullmatch(str(key)):
            shared.append({"key": str(key), "value": _text(value)})
        else:
            notes.append(f"[env] {str(key)[:40]!r} is not a usable env var name; it was left out")
    web_only: list[dict[str, str]] = []
    given = next((e["value"] for e in shared if e["key"] == "PORT"), None)
    if web.port is not None and given is None and web.port != 10000:
        web_only.append({"key": "PORT", "value": str(web.port)})
        notes.append(f"the app listened on internal_port {web.port}; PORT is set to it (better: bind to $PORT)")
    elif web.port is not None and given is not None and given != str(web.port):
        notes.append(f"[env] PORT = {given} but internal_port = {web.port}; PORT {given} was kept")
    return shared, web_only


def build_from_fly_toml(
    text: str, *, source: str = "fly.toml", name: str = "app", files: Collection[str] = ()
) -> Imported:
    """Translate a fly.toml into services (one per process group) with notes for the rest;
    ``files``: the names of the files next to it (for a buildpack app's runtime)."""
    fly = _read_toml(text, source)
    notes: list[str] = []
    names = Names(notes)
    app = names.label(str(fly.get("app") or name), "the app name")
    build: dict[str, Any] = fly["build"] if isinstance(fly.get("build"), dict) else {}
    deploy: dict[str, Any] = fly["deploy"] if isinstance(fly.get("deploy"), dict) else {}
    processes = {str(k): str(v) for k, v in fly["processes"].items()} if isinstance(fly.get("processes"), dict) else {}
    groups: dict[str, str | None] = dict(processes) or {"app": None}
    web = _web_facts(fly, notes)
    shared_env, web_env = _env_vars(fly, web, notes)
    runtimes = _fly_runtimes(build, processes, files, notes)
    release = str(deploy["release_command"]) if deploy.get("release_command") else None
    kill = _kill_timeout(fly, notes)
    services: list[dict[str, Any]] = []
    web_first = sorted(groups, key=lambda g: g not in web.groups)
    for group in web_first:
        command = groups[group]
        is_web = group in web.groups
        svc_name = app if group == web_first[0] else f"{app}-{group.lower().replace('_', '-')}"
        svc: dict[str, Any] = {"type": "web" if is_web else "worker", "name": names.claim(svc_name, "process group")}
        svc.update(_fly_build(build, runtimes.get(group), command, files))
        if release and not services:
            svc["preDeployCommand"] = release
        if is_web and web.health:
            svc["healthCheckPath"] = web.health
        if kill is not None:
            svc["maxShutdownDelaySeconds"] = kill
        memory = _memory_of(fly, group, notes)
        if memory is not None:
            svc["memoryLimitMB"] = memory
        if group in web.min_running:
            svc["numInstances"] = web.min_running[group]
        entries = shared_env + (web_env if is_web else [])
        if entries:
            svc["envVars"] = [dict(e) for e in entries]
        services.append(svc)
    if release and len(services) > 1:
        notes.append(f"release_command runs once per deploy of '{services[0]['name']}' (its preDeployCommand)")
    if any("memoryLimitMB" in s for s in services):
        notes.append(
            "[[vm]] memory became memoryLimitMB, a slipstream extension Render's validator rejects: "
            "for Render, replace it with a plan (starter 512 MB, standard 2 GB, ...)"
        )
    _mounts(fly, list(zip(web_first, services, strict=True)), notes)
    for svc in services:
        if "numInstances" in svc:
            notes.append(f"min_machines_running = {svc['numInstances']} became numInstances of '{svc['name']}'")
    _deploy_notes(build, deploy, fly, notes)
    _leftover_notes(fly, notes)
    notes.append("fly secrets are not in fly.toml: add each one under envVars with 'sync: false'")
    return Imported({"services": services}, unique(notes))


def _fly_runtimes(
    build: dict[str, Any], processes: dict[str, str], files: Collection[str], notes: list[str]
) -> dict[str, str]:
    """Native runtimes per process group of a buildpack app (its commands tell); empty otherwise."""
    if build.get("image") or build.get("dockerfile") or not (build.get("builder") or build.get("buildpacks")):
        return {}
    runtimes = {g: rt for g, cmd in processes.items() if (rt := runtime_of_command(cmd))}
    if not runtimes and processes and runtime_of_files(files):
        runtimes = dict.fromkeys(processes, str(runtime_of_files(files)))
    if len(runtimes) < max(1, len(processes)):
        notes.append(
            "[build] uses buildpacks; Render has no buildpack builds: the process groups whose runtime "
            "could not be told from their command use runtime docker (add a Dockerfile, or pick a "
            "native runtime with a buildCommand)"
        )
    return runtimes


def _fly_build(
    build: dict[str, Any], runtime: str | None, command: str | None, files: Collection[str]
) -> dict[str, Any]:
    """How one service is built and started: a prebuilt image, a native runtime, or a Dockerfile."""
    if build.get("image"):
        out: dict[str, Any] = {"runtime": "image", "image": {"url": str(build["image"])}}
    elif runtime is not None and command:
        out = {"runtime": runtime}
        if build_command(runtime, files):
            out["buildCommand"] = build_command(runtime, files)
        return {**out, "startCommand": command}
    else:
        out = {"runtime": "docker"}
        if build.get("dockerfile"):
            out["dockerfilePath"] = str(build["dockerfile"])
    if command:
        out["dockerCommand"] = command
    return out


def _kill_timeout(fly: dict[str, Any], notes: list[str]) -> int | None:
    kill = _seconds(fly.get("kill_timeout"))
    if kill is None:
        return None
    clamped = min(300, max(1, kill))
    if clamped != kill:
        notes.append(f"kill_timeout {fly['kill_timeout']} was clamped to {clamped} s (the allowed range is 1 to 300)")
    return clamped


def _deploy_notes(build: dict[str, Any], deploy: dict[str, Any], fly: dict[str, Any], notes: list[str]) -> None:
    if build.get("args"):
        notes.append("[build.args] have no blueprint equivalent; pass them as ARG defaults in the Dockerfile")
    if deploy.get("strategy"):
        notes.append(
            f"[deploy] strategy = '{deploy['strategy']}': slipstream always starts the new "
            "release, health-checks it, then switches (stop-first for services with a disk)"
        )
    if fly.get("kill_signal") and str(fly["kill_signal"]).upper() != "SIGTERM":
        notes.append(f"kill_signal = {fly['kill_signal']}: services are stopped with SIGTERM here")


def _mounts(fly: dict[str, Any], services: list[tuple[str, dict[str, Any]]], notes: list[str]) -> None:
    """Each volume becomes the disk of the first service of a group it is mounted in."""
    for mount in _tables(fly.get("mounts")):
        target = next((svc for group, svc in services if _applies(mount, group)), None)
        if target is None or "disk" in target:
            notes.append(f"volume '{mount.get('source')}' was not added: a service has one disk")
            continue
        destination = str(mount.get("destination") or "/data")
        disk: dict[str, Any] = {
            "name": str(mount.get("source") or "data"),
            "mountPath": destination if destination.startswith("/") else "/" + destination,
        }
        size = _gigabytes(mount.get("initial_size"))
        if size:
            disk["sizeGB"] = size
        target["disk"] = disk
        notes.append(
            f"volume '{disk['name']}' became the disk of '{target['name']}'; a service with a "
            "disk stops its old instance before starting the new one"
        )
        if target.pop("numInstances", None) is not None:
            notes.append(f"'{target['name']}' runs one instance: a service with a disk cannot run more")


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
    "vm",
}


def _leftover_notes(fly: dict[str, Any], notes: list[str]) -> None:
    explain = {
        "primary_region": "slipstream runs everything on one machine",
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
