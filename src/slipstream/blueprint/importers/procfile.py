"""A Procfile (Heroku) in, services out: web -> web, release -> preDeployCommand, others -> workers."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from slipstream.blueprint.importers.common import Imported, Names, fail, unique
from slipstream.blueprint.importers.runtimes import build_command, pick_runtimes

_PROC_LINE = re.compile(r"([A-Za-z0-9_-]+)\s*:\s*(.*)")


def _read_procfile(text: str, source: str) -> dict[str, str]:
    processes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROC_LINE.fullmatch(line)
        if not match or not match.group(2).strip():
            raise fail(
                source, number, 1, f"'{line[:60]}' is not a Procfile line", "each line is 'process_type: command'"
            )
        if match.group(1) in processes:
            raise fail(source, number, 1, f"process type '{match.group(1)}' appears twice")
        processes[match.group(1)] = match.group(2).strip()
    if not processes:
        raise fail(source, 1, 1, "the Procfile declares no processes", "add a line such as 'web: gunicorn app:app'")
    if list(processes) == ["release"]:
        raise fail(source, 1, 1, "the Procfile declares only a release command", "add a 'web:' or worker process")
    return processes


def build_from_procfile(
    text: str, *, name: str, runtime: str | None = None, files: Collection[str] = (), source: str = "Procfile"
) -> Imported:
    """Translate Procfile process types into services: web -> web, release -> preDeployCommand,
    everything else -> worker. ``runtime``: the one asked for (else guessed); ``files``: the names
    of the files next to the Procfile."""
    notes: list[str] = []
    names = Names(notes)
    processes = _read_procfile(text, source)
    release = processes.pop("release", None)
    runtimes = pick_runtimes(processes, runtime, files, notes)
    app = names.label(name, "the app name")
    services: list[dict[str, Any]] = []
    for proc, command in sorted(processes.items(), key=lambda item: item[0] != "web"):
        is_web = proc == "web"
        service: dict[str, Any] = {
            "type": "web" if is_web else "worker",
            "name": names.claim(app if is_web else f"{app}-{proc.lower().replace('_', '-')}", "process"),
            "runtime": runtimes[proc],
        }
        build = build_command(runtimes[proc], files)
        if build:
            service["buildCommand"] = build
        service["startCommand"] = command
        if proc in ("clock", "scheduler"):
            notes.append(
                f"'{proc}' became a worker; if it only triggers jobs on a timetable, a "
                "'type: cron' service with a schedule is the Render way"
            )
        services.append(service)
    if release:
        services[0]["preDeployCommand"] = release
        if services[0]["type"] != "web":
            notes.append(f"'release' became the preDeployCommand of '{services[0]['name']}' (there is no web process)")
    notes.append(
        "Heroku config vars are not in the Procfile: add them under envVars "
        "(use 'sync: false' for secrets, fromDatabase for DATABASE_URL)"
    )
    notes.append("dyno counts (heroku ps:scale) are not in the Procfile: set numInstances to run more than one")
    return Imported({"services": services}, unique(notes))
