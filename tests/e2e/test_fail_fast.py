"""A failing deploy fails fast and says why; cancel and the override policy never touch the live
release (real daemon, HAProxy and app processes, under load)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.blueprints import web
from tests.e2e.conftest import SLIPSTREAM, Daemon, Load, make_app_repo, start_daemon, stop_daemon
from tests.e2e.test_resilience import wait_until

pytestmark = pytest.mark.e2e

CRASHER = web().replace("startCommand: python app.py", 'startCommand: "echo fatal: cannot reach the database; exit 7"')
SLOW_BUILD = web(build="echo compiling && sleep 30")
HANGS = web(env={"HEALTH_STATUS": "500"})


def live(d: Daemon, service: str = "web") -> dict:
    s = next(s for s in json.loads(d.cli("status", "--json").stdout)["services"] if s["name"] == service)
    return s["live_deploy"]


def deploy_async(d: Daemon, blueprint: Path, commit: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SLIPSTREAM, "deploy", "web", "--blueprint", str(blueprint), "--commit", commit],
        env=d.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_crash_looping_release_fails_in_seconds_with_its_output(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(tmp_path / "app", {"render.yaml": web(), "render-crash.yaml": CRASHER})
    r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
    assert r.returncode == 0, r.stdout + r.stderr
    before = live(daemon)["id"]
    started = time.monotonic()
    r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render-crash.yaml"), "--commit", repo.commits["2"])
    took = time.monotonic() - started
    print(f"crash-looping deploy failed after {took:.2f} s")
    assert r.returncode == 1, r.stdout + r.stderr
    assert took < 10, f"took {took:.1f} s"
    assert "update_failed" in r.stderr and "exit code 7" in r.stderr
    assert "fatal: cannot reach the database" in r.stderr  # the last lines are in the message
    assert "[web-d" in r.stdout and "fatal: cannot reach the database" in r.stdout  # streamed while waiting
    assert "Traceback" not in r.stderr
    assert live(daemon)["id"] == before
    assert daemon.get("web.localhost")[1] == "version=1"


def test_a_first_deploy_that_crash_loops_ends_in_seconds(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(tmp_path / "app", {"render.yaml": CRASHER})
    started = time.monotonic()
    r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
    assert r.returncode == 1 and time.monotonic() - started < 10, r.stdout + r.stderr
    assert "exited before it was ever healthy" in r.stderr


@pytest.fixture
def patient_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose health deadline outlasts any wait for a cancel (the ``daemon`` fixture's 6 s
    ran out on a loaded machine before ``cancel`` arrived, and the hanging deploy failed by itself)."""
    d = start_daemon(tmp_path / "home", SLIPSTREAM_HEALTH_DEADLINE="120", SLIPSTREAM_SETTLE_SECONDS="1.5")
    try:
        yield d
    finally:
        stop_daemon(d)


def test_cancel_under_load_leaves_the_live_release_serving(patient_daemon: Daemon, tmp_path: Path) -> None:
    daemon = patient_daemon
    repo = make_app_repo(tmp_path / "app", {"render.yaml": web(), "render-hangs.yaml": HANGS, "slow.yaml": SLOW_BUILD})
    assert (
        daemon.cli(
            "deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"]
        ).returncode
        == 0
    )
    before = live(daemon)["id"]
    with Load(daemon.http_port, "web.localhost") as load:
        for blueprint, stage in (("render-hangs.yaml", "health_check"), ("slow.yaml", "building")):
            proc = deploy_async(daemon, repo.path / blueprint, repo.commits["2"])
            wait_until(lambda: (a := _active(daemon)) is not None and a["status"] == stage, timeout=30)
            started = time.monotonic()
            r = daemon.cli("cancel", "web")
            assert r.returncode == 0 and "canceled deploy" in r.stdout, r.stdout + r.stderr
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 1, out + err
            assert "canceled" in err and "the live release keeps serving" in err
            assert time.monotonic() - started < 10
            assert live(daemon)["id"] == before
    assert load.failures == [] and load.ok > 50
    assert set(load.versions) == {"version=1"}
    # nothing left of the canceled deploys: no instance but the live one, no stray server
    insts = next(s for s in json.loads(daemon.cli("status", "--json").stdout)["services"])["instances"]
    assert [i["deploy"] for i in insts] == [before]


def test_a_new_deploy_overrides_the_one_in_progress(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(tmp_path / "app", {"render.yaml": web(), "render-hangs.yaml": HANGS}, versions=("1", "2", "3"))
    assert (
        daemon.cli(
            "deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"]
        ).returncode
        == 0
    )
    with Load(daemon.http_port, "web.localhost") as load:
        doomed = deploy_async(daemon, repo.path / "render-hangs.yaml", repo.commits["2"])
        wait_until(lambda: (a := _active(daemon)) is not None and a["status"] == "health_check", timeout=30)
        r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["3"])
        assert r.returncode == 0, r.stdout + r.stderr
        out, err = doomed.communicate(timeout=60)
        assert doomed.returncode == 1 and "overridden by deploy" in err, out + err
        assert daemon.get("web.localhost")[1] == "version=3"
    assert load.failures == []
    assert set(load.versions) <= {"version=1", "version=3"} and "version=3" in load.versions


def _active(d: Daemon) -> dict | None:
    services = json.loads(d.cli("status", "--json").stdout)["services"]
    return next((s["active_deploy"] for s in services if s["name"] == "web"), None)


def test_a_failing_smoke_check_flips_back_under_load(daemon: Daemon, tmp_path: Path) -> None:
    smoke = "    smokeChecks:\n      - path: /env/SMOKE\n        contains: pass\n"
    good = web(env={"SMOKE": "pass"}).replace("    envVars:\n", smoke + "    envVars:\n")
    bad = web(env={"SMOKE": "fail"}).replace("    envVars:\n", smoke + "    envVars:\n")
    repo = make_app_repo(tmp_path / "app", {"render.yaml": good, "render-bad.yaml": bad})
    r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
    assert r.returncode == 0 and "smoke check GET /env/SMOKE: ok" in r.stdout, r.stdout + r.stderr
    before = live(daemon)["id"]
    with Load(daemon.http_port, "web.localhost") as load:
        r = daemon.cli(
            "deploy", "web", "--blueprint", str(repo.path / "render-bad.yaml"), "--commit", repo.commits["2"]
        )
        time.sleep(0.5)
    assert r.returncode == 1 and "smoke check failed: GET /env/SMOKE answered without 'pass'" in r.stderr, r.stderr
    assert f"traffic moved back to deploy {before}" in r.stderr
    assert live(daemon)["id"] == before and daemon.get("web.localhost")[1] == "version=1"
    assert load.failures == [] and load.ok > 20
