"""Helpers for the static tests: rule dataclasses, golden files, a real Caddy on loopback."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipstream.static import HEALTH_PATH, caddy_command, render_caddy_config, write_caddy_config

SEP = "----------"


@dataclass(frozen=True)
class Rule:
    """A route rule shaped like slipstream.blueprint.StaticRoute."""

    type: str
    source: str
    destination: str


@dataclass(frozen=True)
class Hdr:
    """A header rule shaped like slipstream.blueprint.Header."""

    path: str
    name: str
    value: str


def load_golden(path: Path) -> tuple[dict[str, Any], str]:
    """A golden file: input JSON, a separator line, the expected Caddy JSON."""
    text = path.read_text()
    head, _, tail = text.partition("\n" + SEP + "\n")
    return json.loads(head), tail


def render_case(case: dict[str, Any]) -> dict[str, Any]:
    """Render a golden input with the real function."""
    return render_caddy_config(
        Path(case["publish_dir"]), [Rule(**r) for r in case["routes"]], [Hdr(**h) for h in case["headers"]]
    )


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def get(port: int, path: str, headers: dict[str, str] | None = None) -> Response:
    """One GET on a fresh connection, redirects not followed; header names lower-cased."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class CaddySite:
    """Caddy started exactly as the engine would: ``/bin/sh -c caddy_command`` with PORT set."""

    def __init__(self, workdir: Path, publish_dir: Path, routes: list[Rule], headers: list[Hdr]) -> None:
        self.port = free_port()
        self.config_path = workdir / "caddy.json"
        self.log_path = workdir / "caddy.log"
        self.data_dir = workdir / "caddy-data"
        write_caddy_config(self.config_path, render_caddy_config(publish_dir, routes, headers))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, home: Path) -> None:
        """Start Caddy and wait (bounded) until the health path answers."""
        env = {"PATH": "/usr/bin:/bin", "PORT": str(self.port), "HOME": str(home)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", caddy_command(self.config_path)],
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"caddy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if get(self.port, HEALTH_PATH).status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"caddy did not answer within 10 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole group if it lingers; always reaps."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


SiteFactory = Callable[[Path, list[Rule], list[Hdr]], CaddySite]

SPA_FILES = {
    "index.html": "<h1>spa home</h1>\n",
    "assets/app.js": "console.log('app');\n",
    "assets/theme.css": "body { color: red }\n",
    "style.css": "h1 { margin: 0 }\n",
    "old/keep.html": "<p>kept</p>\n",
    "blog/index.html": "<h1>blog</h1>\n",
    "pages/about.html": "<h1>about</h1>\n",
    ".git/config": "[core]\n",
    "big.txt": "slipstream static site " * 2000,
}


def make_publish_dir(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root`` and return it."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
