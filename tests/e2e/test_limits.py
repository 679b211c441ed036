"""Limits for real: a plan's memory cap, CPU share and process limit hold for the instance the
daemon started, for the one a restarted daemon starts again, and a stop leaves no setsid child."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Daemon, make_app_repo, start_daemon, stop_daemon

pytestmark = pytest.mark.e2e
CGROUP = Path("/sys/fs/cgroup")


def blueprint(marker: Path) -> str:
    return f"""services:
  - type: web
    name: web
    runtime: python
    plan: starter
    buildCommand: echo ok
    startCommand: setsid sleep 1000 & echo $! >> {marker}; exec python app.py
    healthCheckPath: /health
    maxShutdownDelaySeconds: 2
"""


def wait_until(pred, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def instance(d: Daemon) -> dict:  # type: ignore[type-arg]
    return json.loads(d.cli("status", "--json").stdout)["services"][0]["instances"][0]  # type: ignore[no-any-return]


def limits_of(pid: int) -> dict[str, str]:
    """The limits the kernel applies to ``pid``, from its cgroups (v1 hierarchies)."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            paths[c] = CGROUP / c / path.lstrip("/")
    if not (CGROUP / "memory" / "memory.limit_in_bytes").exists():
        pytest.skip("not a cgroup v1 machine")
    return {
        "memory": (paths["memory"] / "memory.limit_in_bytes").read_text().strip(),
        "cpu": (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip(),
        "pids": (paths["pids"] / "pids.max").read_text().strip(),
    }


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_limits_survive_a_daemon_restart_and_a_stop_leaves_no_setsid_child(tmp_path: Path) -> None:
    # as root the app runs as its own user: its marker goes in a folder open like /tmp, not under
    # pytest's tmp root (0700)
    open_dir = Path(tempfile.mkdtemp(prefix="slipstream-limits-"))
    os.chmod(open_dir, 0o1777)
    marker = open_dir / "children"
    d = start_daemon(tmp_path / "home", SLIPSTREAM_HEALTH_DEADLINE="20", SLIPSTREAM_SETTLE_SECONDS="0.5")
    try:
        repo = make_app_repo(tmp_path / "app", {"render.yaml": blueprint(marker)}, versions=("1",))
        r = d.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"))
        assert r.returncode == 0, r.stdout + r.stderr
        starter = {"memory": str(512 << 20), "cpu": "50000", "pids": "512"}  # 512 MB, 0.5 of a core
        first = instance(d)["pid"]
        assert limits_of(first) == starter

        daemon_pid = int((d.home / "run" / "daemon.pid").read_text())
        os.kill(daemon_pid, signal.SIGKILL)
        wait_until(lambda: not alive(daemon_pid))
        r = d.cli("up", "--detach")
        assert r.returncode == 0, r.stdout + r.stderr
        assert instance(d)["pid"] == first  # adopted

        os.kill(first, signal.SIGKILL)  # the new daemon restarts it from the recorded release
        again = wait_until(lambda: (i := instance(d))["pid"] not in (None, first) and i["process"] == "running" and i)
        assert limits_of(again["pid"]) == starter
        children = wait_until(lambda: len(c := [int(x) for x in marker.read_text().split()]) == 2 and c)
        assert not alive(children[0])  # the crash swept the first run's setsid child before the restart
        assert alive(children[1])

        r = d.cli("down")
        assert r.returncode == 0, r.stdout + r.stderr
        assert not alive(children[1])  # 'down' swept it: it had left the process group
    finally:
        stop_daemon(d)
        shutil.rmtree(open_dir, ignore_errors=True)
