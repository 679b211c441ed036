"""Crashes and restarts: a killed instance comes back; a killed daemon loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.blueprints import web
from tests.e2e.conftest import Daemon, Load, make_app_repo, start_daemon

pytestmark = pytest.mark.e2e


def wait_until(pred, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def instances(d: Daemon) -> list[dict]:
    return json.loads(d.cli("status", "--json").stdout)["services"][0]["instances"]


def test_killed_instance_is_restarted_with_backoff_visible(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(tmp_path / "app", {"render.yaml": web()})
    r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"))
    assert r.returncode == 0, r.stderr
    first = instances(daemon)[0]
    os.kill(first["pid"], signal.SIGKILL)
    again = wait_until(
        lambda: next(
            (i for i in instances(daemon) if i["pid"] and i["pid"] != first["pid"] and i["process"] == "running"), None
        )
    )
    assert again["restarts"] >= 1
    assert wait_until(lambda: daemon.get("web.localhost")[0] == 200)
    r = daemon.cli("status")
    assert "restarts=1" in r.stdout
    assert r.stdout == status_through(daemon, FULL_APP)
    assert status_through(daemon, FAST_ONLY) == r.stdout  # the real daemon's answer, drawn by cli.fast


# 'slipstream status' through the Typer app alone, and through cli.fast alone (exit 3 when it steps aside).
FULL_APP = "import sys; sys.argv = ['slipstream', 'status']; from slipstream.cli.app import app; app()"
FAST_ONLY = "import sys; from slipstream.cli import fast; sys.exit(3 if fast.run(['status']) is None else 0)"


def status_through(d: Daemon, code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], env=d.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_daemon_kill_9_keeps_serving_and_is_adopted(tmp_path: Path) -> None:
    d = start_daemon(tmp_path / "home", SLIPSTREAM_HEALTH_DEADLINE="6", SLIPSTREAM_SETTLE_SECONDS="0.5")
    try:
        repo = make_app_repo(tmp_path / "app", {"render.yaml": web()})
        assert d.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml")).returncode == 0
        app_pid = instances(d)[0]["pid"]
        daemon_pid = int((d.home / "run" / "daemon.pid").read_text())
        with Load(d.http_port, "web.localhost", threads=2) as load:
            os.kill(daemon_pid, signal.SIGKILL)
            time.sleep(1.0)
            assert d.get("web.localhost")[0] == 200  # HAProxy and the app serve without the daemon
            r = d.cli("up", "--detach")
            assert r.returncode == 0, r.stdout + r.stderr
            time.sleep(0.5)
        assert load.failures == [] and load.ok > 50
        assert psutil.pid_exists(app_pid)
        assert instances(d)[0]["pid"] == app_pid  # adopted, not restarted
        assert d.get("web.localhost") == (200, "version=2")
    finally:
        from tests.e2e.conftest import stop_daemon

        stop_daemon(d)
