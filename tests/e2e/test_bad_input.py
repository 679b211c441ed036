"""Bad input gets one actionable line, exit 1, and changes nothing."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.blueprints import web
from tests.e2e.conftest import Daemon, make_app_repo, stop_daemon

pytestmark = pytest.mark.e2e


def one_error(r) -> str:  # type: ignore[no-untyped-def]
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("Error:"), r.stderr
    return r.stderr


def test_bad_input_is_refused_and_changes_nothing(daemon: Daemon, tmp_path: Path) -> None:
    repo = make_app_repo(
        tmp_path / "app", {"render.yaml": web(), "broken.yaml": "services:\n  - type: web\n    name: [oops\n"}
    )
    bp = str(repo.path / "render.yaml")
    assert daemon.cli("deploy", "web", "--blueprint", bp).returncode == 0
    before = daemon.cli("deploys", "web", "--json").stdout

    assert "unknown service 'nope'" in one_error(daemon.cli("rollback", "nope"))
    assert "no service 'api'" in one_error(daemon.cli("deploy", "api", "--blueprint", bp))
    assert "no blueprint at" in one_error(daemon.cli("deploy", "web", "--blueprint", str(tmp_path / "missing.yaml")))
    err = one_error(daemon.cli("deploy", "web", "--blueprint", str(repo.path / "broken.yaml")))
    assert "broken.yaml:" in err
    assert "unknown commit" in one_error(daemon.cli("deploy", "web", "--blueprint", bp, "--commit", "deadbeef"))
    assert daemon.cli("deploys", "web", "--json").stdout == before
    assert json.loads(daemon.cli("status", "--json").stdout)["services"][0]["live_deploy"]["status"] == "live"


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        import os

        from tests.e2e.conftest import Daemon as D

        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
        env.update(SLIPSTREAM_HOME=str(tmp_path / "home"), SLIPSTREAM_HTTP_PORT=str(port))
        d = D(tmp_path / "home", port, env)
        try:
            r = d.cli("up", "--detach")
            assert r.returncode == 1
            assert "in use" in r.stderr and "Traceback" not in r.stderr
        finally:
            stop_daemon(d)


def test_not_running_is_a_clear_error(tmp_path: Path) -> None:
    import os

    from tests.e2e.conftest import Daemon as D

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    env["SLIPSTREAM_HOME"] = str(tmp_path / "nohome")
    r = D(tmp_path / "nohome", 1, env).cli("status")
    assert "not running" in one_error(r)
