"""Searchable logs end to end: lines from a build, a pre-deploy, two deploys, a crash and the
platform's own events land in one store, masked, and `slipstream logs` finds them by deploy, text,
level, time and instance, as JSON with the documented keys (real daemon and app processes)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path

import pytest

from slipstream.proxy.config import DEFAULT_BACKUP_SLOTS
from tests.e2e.blueprints import SECRET, web
from tests.e2e.conftest import Daemon, make_app_repo, start_daemon, stop_daemon
from tests.e2e.test_resilience import wait_until

pytestmark = pytest.mark.e2e

BLUEPRINT = web(build="echo compiling the release", pre="echo migrating the database")


def logs(d: Daemon, *args: str) -> list[dict]:
    r = d.cli("logs", "web", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def deploy_id(d: Daemon) -> int:
    return next(s for s in json.loads(d.cli("status", "--json").stdout)["services"])["live_deploy"]["id"]


def test_every_line_is_found_by_deploy_text_level_and_time(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(tmp_path / "app", {"render.yaml": BLUEPRINT})
    for v in ("1", "2"):
        r = daemon.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits[v])
        assert r.returncode == 0, r.stdout + r.stderr
    second = deploy_id(daemon)
    first = second - 1
    started = time.time()

    # a crash of the live instance: the platform says so, and the app's lines go on in the same file
    pid = next(s for s in json.loads(daemon.cli("status", "--json").stdout)["services"])["instances"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: any("was killed by SIGKILL" in x["message"] for x in logs(daemon, "-n", "200")), timeout=20)

    everything = logs(daemon, "-n", "1000")
    assert {"time", "service", "deploy", "instance", "stream", "level", "message"} <= set(everything[0])
    assert {x["stream"] for x in everything} >= {"app", "pre_deploy", "platform"}
    assert all(x["time"].endswith("Z") and x["service"] == "web" for x in everything)
    assert SECRET not in json.dumps(everything)  # masked before it was stored
    assert any(f"secret={'*' * 8}" in x["message"] for x in everything)

    # by deploy: each deploy's own pre-deploy and app lines
    for d in (first, second):
        mine = logs(daemon, "--deploy", str(d), "-n", "1000")
        assert mine and {x["deploy"] for x in mine} == {d}
        assert any(x["stream"] == "pre_deploy" and "migrating the database" in x["message"] for x in mine)
    # by text (any case) and by regex
    found = logs(daemon, "--grep", "MIGRATING THE", "-n", "1000")
    assert all("migrating the database" in x["message"] for x in found)
    assert [x["deploy"] for x in found if x["stream"] == "pre_deploy"] == [first, second]  # and the transcript's
    assert logs(daemon, "--grep", "/kill(ed)? by SIG[A-Z]+/", "-n", "1000")
    # by level: the crash is a warning or worse; plain app lines are not
    bad = logs(daemon, "--level", "warn", "-n", "1000")
    assert any("SIGKILL" in x["message"] for x in bad) and not any(x["stream"] == "app" for x in bad)
    # by time: only what happened since the crash
    recent = logs(daemon, "--since", f"{time.time() - started + 1:.0f}s", "-n", "1000")
    assert recent and len(recent) < len(everything)
    assert all(x["time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1)) for x in recent)
    # by instance, and the build's own log
    inst = f"web-d{second}-1"
    assert {x["instance"] for x in logs(daemon, "--instance", inst, "-n", "1000")} == {inst}
    built = logs(daemon, "--build", "-n", "1000")
    assert any("compiling the release" in x["message"] for x in built)
    assert {x["stream"] for x in built} == {"build"}

    # HAProxy's access lines: method, path, status, timings, and the instance that served it
    assert daemon.get("web.localhost", "/a-path-to-find")[0] == 200
    wait_until(lambda: logs(daemon, "--grep", "a-path-to-find", "-n", "10"), timeout=20)
    (access,) = [x for x in logs(daemon, "--grep", "a-path-to-find", "-n", "10") if x["stream"] == "http"]
    assert access["instance"] == inst and "GET /a-path-to-find" in access["message"] and "200" in access["message"]

    # the app sees the client's real address, never a client's own X-Forwarded-For
    conn = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=10)
    conn.request("GET", "/header/X-Forwarded-For", headers={"Host": "web.localhost", "X-Forwarded-For": "6.6.6.6"})
    assert conn.getresponse().read().decode() == "127.0.0.1"
    conn.close()

    # a bad filter is one clear error
    r = daemon.cli("logs", "web", "--level", "loud")
    assert r.returncode == 1 and "--level: unknown level 'loud'" in r.stderr and "Traceback" not in r.stderr


def test_retention_drops_lines_older_than_the_limit(tmp_path: Path) -> None:
    # 0.0002 days: lines older than about 17 s go (the daemon prunes every couple of seconds then)
    d = start_daemon(tmp_path / "home", SLIPSTREAM_LOG_RETENTION_DAYS="0.0002", SLIPSTREAM_SETTLE_SECONDS="0")
    try:
        repo = make_app_repo(tmp_path / "app", {"render.yaml": BLUEPRINT})
        r = d.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
        assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: any("migrating the database" in x["message"] for x in logs(d, "-n", "100")), timeout=20)
        time.sleep(18)
        assert d.get("web.localhost")[0] == 200  # a fresh line or two keep arriving
        wait_until(lambda: not any("migrating the database" in x["message"] for x in logs(d, "-n", "1000")), timeout=30)
    finally:
        stop_daemon(d)


def test_proxy_settings_access_log_off_and_pool_sizes(tmp_path: Path) -> None:
    """SLIPSTREAM_ACCESS_LOG=off keeps requests out of the store; the proxy's pools are settings."""
    sizes = {"SLIPSTREAM_PROXY_SERVICES": "5", "SLIPSTREAM_PROXY_SLOTS": "4", "SLIPSTREAM_PROXY_PRIVATE_SERVICES": "2"}
    d = start_daemon(tmp_path / "home", SLIPSTREAM_ACCESS_LOG="off", **sizes)
    try:
        repo = make_app_repo(tmp_path / "app", {"render.yaml": BLUEPRINT})
        r = d.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
        assert r.returncode == 0, r.stdout + r.stderr
        for _ in range(5):
            assert d.get("web.localhost")[0] == 200
        wait_until(lambda: any("migrating the database" in x["message"] for x in logs(d, "-n", "200")), timeout=20)
        time.sleep(1)  # what the pipeline would have stored by now
        assert not [x for x in logs(d, "-n", "1000") if x["stream"] == "http"]
        config = (tmp_path / "home" / "proxy" / "haproxy.cfg").read_text()
        assert "log-format" not in config and "access.sock" not in config
        backends = [line.split()[1] for line in config.splitlines() if line.startswith("backend ")]
        assert len([b for b in backends if b.startswith("be_")]) == 5
        assert len([b for b in backends if b.startswith("pbe_")]) == 2
        servers = [line for line in config.splitlines() if line.startswith("    server ")]
        assert len([line for line in servers if " backup " not in line]) == 7 * 4
        assert len([line for line in servers if " backup " in line]) == 7 * DEFAULT_BACKUP_SLOTS
    finally:
        stop_daemon(d)
