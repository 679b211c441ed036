"""Apps run unprivileged (issue 14): deployed through the real daemon as root, an app runs as its
service's own system user and cannot read the platform's keys and state, another service's
build, the API socket or HAProxy's access-log socket, nor write outside its build, disk, HOME
and /tmp; its build command and pre-deploy command ran as that user too, and the platform keeps
serving afterwards, also after a fork bomb that meets its pids limit. (No database here, to stay lean: the PostgreSQL password file,
postgres/cluster.json, is covered by test_database.py, where the user nobody can read nothing in
the state directory but the public certificates.)"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.e2e.conftest import Daemon, git

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="service users need a root daemon"),
]

PROBE = Path(__file__).parent / "isolation" / "probe.py"


def blueprint(home: Path) -> str:
    common = (
        "    runtime: python\n    startCommand: python probe.py\n    healthCheckPath: /health\n"
        f"    maxShutdownDelaySeconds: 3\n    envVars:\n      - key: STATE_HOME\n        value: {home}\n"
    )
    return (
        "services:\n"
        "  - type: web\n    name: probe\n    buildCommand: id -un > built_by\n"
        "    preDeployCommand: 'id -un > \"$HOME/predeploy_by\"'\n"
        f"    disk:\n      name: data\n      mountPath: {home.parent / 'probe-data'}\n"
        + common
        + "  - type: web\n    name: other-app\n"
        "    buildCommand: id -un > built_by\n    preDeployCommand: 'id -un > \"$HOME/predeploy_by\"'\n" + common
    )


def test_an_app_cannot_reach_the_platform_or_another_service(open_daemon: Daemon, open_root: Path) -> None:
    d = open_daemon
    repo = open_root / "repo"
    repo.mkdir()
    shutil.copy(PROBE, repo / "probe.py")
    (repo / "render.yaml").write_text(blueprint(d.home))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "probe")
    for name in ("other-app", "probe"):
        r = d.cli("deploy", name, "--blueprint", str(repo / "render.yaml"), timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr

    other_builds = d.home / "builds" / "other-app"
    other_file = next(other_builds.glob("*/src/probe.py"))
    status, body = d.get("probe.localhost", f"/probe?build={other_builds}&file={other_file}")
    assert status == 200, body
    seen = json.loads(body)

    assert seen["user"] == "slip-probe" and seen["uid"] != 0
    assert seen["home_owner"] == seen["uid"]  # HOME is its own directory, not /root
    assert seen["built_by"] == "slip-probe"  # buildCommand ran as the service's user
    assert seen["predeploy_by"] == "slip-probe"  # and so did preDeployCommand
    assert seen["forbidden"] == {attempt: "EACCES" for attempt in seen["forbidden"]}
    assert seen["allowed"] == {attempt: "ok" for attempt in seen["allowed"]}
    assert "write on its disk" in seen["allowed"]

    # the other service has a user of its own; what the platform keeps private stays root's 0600
    own_file = next((d.home / "builds" / "probe").glob("*/src/probe.py"))
    status, body = d.get("other-app.localhost", f"/probe?build={d.home / 'builds' / 'probe'}&file={own_file}")
    assert status == 200, body
    other = json.loads(body)
    assert other["user"] == "slip-other-app" and other["uid"] not in (0, seen["uid"])
    assert other["forbidden"] == {attempt: "EACCES" for attempt in other["forbidden"]}
    for private in ("master.key", "state.db", "run/api.sock"):
        st = (d.home / private).stat()
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0, private
    disk = d.home / "disks" / "probe" / "data"
    assert disk.stat().st_uid == seen["uid"] and (disk / "probe.out").exists()

    # a fork bomb meets the instance's pids limit (SLIPSTREAM_PIDS_MAX, 512 by default): the kernel
    # refuses the fork long before the machine's own limit, and only this instance is held
    if Path("/sys/fs/cgroup/pids").is_dir() or "pids" in _controllers():
        status, body = d.get("probe.localhost", "/forkbomb")
        assert status == 200, body
        bomb = json.loads(body)
        assert bomb["stopped_by"] == "EAGAIN" and 400 < bomb["forked"] < 512, bomb

    # the platform keeps serving: the daemon answers, both apps still do
    assert d.cli("status").returncode == 0
    assert d.get("probe.localhost", "/health") == (200, "ok")
    assert d.get("other-app.localhost", "/health") == (200, "ok")


def _controllers() -> list[str]:
    try:
        return Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    except OSError:
        return []
