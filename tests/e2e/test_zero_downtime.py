"""The core promise, end to end: deploys, rollbacks and failed deploys under load lose no request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.blueprints import ALL, SECRET
from tests.e2e.conftest import Daemon, Load, make_app_repo

pytestmark = pytest.mark.e2e


def served_version(d: Daemon) -> str:
    status, body = d.get("web.localhost")
    assert status == 200, body
    return body


def live_deploy(d: Daemon) -> dict:
    r = d.cli("status", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["services"][0]["live_deploy"]


def test_deploys_rollbacks_and_failures_under_load(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(tmp_path / "app", ALL)
    bp = str(repo.path / "render.yaml")
    r = daemon.cli("deploy", "web", "--blueprint", bp, "--commit", repo.commits["1"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert served_version(daemon) == "version=1"
    transcript = [r.stdout + r.stderr]
    with Load(daemon.http_port, "web.localhost", threads=2) as load:
        for i in range(10):  # ten successful deploys alternating two commits
            v = "2" if i % 2 == 0 else "1"
            r = daemon.cli("deploy", "web", "--blueprint", bp, "--commit", repo.commits[v])
            transcript.append(r.stdout + r.stderr)
            assert r.returncode == 0, r.stdout + r.stderr
            assert served_version(daemon) == f"version={v}"
            assert live_deploy(daemon)["commit"] == repo.commits[v]
        for _ in range(3):  # rollbacks: back to the other commit each time
            before = served_version(daemon)
            r = daemon.cli("rollback", "web")
            transcript.append(r.stdout + r.stderr)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "not reverted" in r.stdout
            after = served_version(daemon)
            assert after != before
            assert live_deploy(daemon)["kind"] == "rollback"
        live_before = live_deploy(daemon)["id"]
        version_before = served_version(daemon)
        for name, status, says in [
            ("render-badbuild.yaml", "build_failed", "exited with 3"),
            ("render-badpre.yaml", "pre_deploy_failed", "exited with 4"),
            ("render-unhealthy.yaml", "update_failed", "status 500"),
            ("render-crash.yaml", "update_failed", "right after the flip"),
        ]:
            r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / name), "--commit", repo.commits["2"])
            transcript.append(r.stdout + r.stderr)
            assert r.returncode == 1, r.stdout + r.stderr
            assert status in r.stderr and says in (r.stdout + r.stderr), r.stdout + r.stderr
            assert "Traceback" not in r.stderr
            assert served_version(daemon) == version_before
            assert live_deploy(daemon)["id"] == live_before
        r = daemon.cli("deploy", "web", "--blueprint", bp, "--commit", repo.commits["2"])
        assert r.returncode == 0, r.stdout + r.stderr
        assert served_version(daemon) == "version=2"
    print(f"load: {load.ok} ok, {len(load.failures)} failed, versions {dict(load.versions)}")
    assert load.failures == []
    assert load.ok > 100
    assert set(load.versions) == {"version=1", "version=2"}
    # old builds went after each deploy: the live one and the five newest others stay (rollbacks)
    kept = sorted(int(p.name) for p in (daemon.home / "builds" / "web").iterdir())
    assert 1 < len(kept) <= 6, kept
    r = daemon.cli("gc", "--dry-run")
    assert r.returncode == 0 and r.stdout.strip() == "would remove 0 builds, 0.0 MB", r.stdout + r.stderr
    # deploy history carries per-step durations
    r = daemon.cli("deploys", "web", "--json", "-n", "30")
    history = json.loads(r.stdout)
    live = [d for d in history if d["status"] in ("live", "deactivated")]
    assert len(live) >= 15 and all("health" in d["steps"] and "flip" in d["steps"] for d in live)
    # no stability wait before the flip (opt-in): the settle window's backup keeps requests safe
    assert not any("min_healthy" in d["steps"] for d in live), history
    # the secret never reaches the state file, the CLI or the API
    outputs = "\n".join(transcript) + r.stdout + daemon.cli("logs", "web", "-n", "500").stdout
    outputs += daemon.cli("status", "--json").stdout
    assert SECRET not in outputs
    for f in daemon.home.glob("state.db*"):
        assert SECRET.encode() not in f.read_bytes()
    raw = "".join(p.read_text() for p in (daemon.home / "instances").glob("web-*.log"))
    assert f"secret={SECRET}" in raw  # the app did print it: the masking above is real
    assert "secret=********" in daemon.cli("logs", "web", "-n", "100000").stdout


def test_a_release_crashing_after_the_flip_loses_no_request(daemon: Daemon, tmp_path: Path) -> None:
    """A release passes its first check, takes traffic at once (no stability wait), and dies 0.3 s
    or 1.5 s later: during the settle window the old release is its backup in the proxy, so every
    request the dying instance refused or dropped is answered by the old one, which is live again."""
    repo = make_app_repo(tmp_path / "app", ALL)
    r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
    assert r.returncode == 0, r.stdout + r.stderr
    live = live_deploy(daemon)["id"]
    with Load(daemon.http_port, "web.localhost", threads=4) as load:
        for name in ("render-crash.yaml", "render-crash-later.yaml"):
            r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / name), "--commit", repo.commits["2"])
            assert r.returncode == 1, r.stdout + r.stderr
            assert "update_failed" in r.stderr and "right after the flip" in r.stderr, r.stderr
            assert f"traffic moved back to deploy {live}" in r.stderr and "Traceback" not in r.stderr
            assert "crashing on purpose" in r.stdout  # the instance's last log lines are shown
            assert served_version(daemon) == "version=1"
            assert live_deploy(daemon)["id"] == live
    print(f"load: {load.ok} ok, {len(load.failures)} failed, versions {dict(load.versions)}")
    assert load.failures == []
    assert load.versions["version=2"] > 0  # the crashing releases did take traffic before they died
