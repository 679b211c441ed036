"""Errors, waiting for a deploy, and how the app is put together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from slipstream.cli import common
from slipstream.cli.app import app
from tests.cli.conftest import Run
from tests.cli.fakeapi import DEPLOY, FakeApi, error

SRC = Path(common.__file__).parents[2]


def test_fail_prints_one_line_and_exits_1() -> None:
    one = typer.Typer()

    @one.command()
    def boom() -> None:
        common.fail("no service named 'web' [web-d1-1]")

    result = CliRunner().invoke(one, [])
    assert result.exit_code == 1
    assert result.stderr == "Error: no service named 'web' [web-d1-1]\n"  # brackets are text, not markup
    assert result.stdout == ""


def test_an_api_error_is_one_line_with_its_hint(cli: Run, api: FakeApi) -> None:
    api.route("GET", "/v1/services/nope/deploys", error(404, "no service named 'nope'", "run 'slipstream status'"))
    result = cli("deploys", "nope")
    assert result.exit_code == 1
    assert result.stderr == "Error: no service named 'nope'\n  run 'slipstream status'\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


def test_no_daemon_is_one_error_line(tmp_path: Path) -> None:
    """The real socket client: nothing listens under a fresh home."""
    result = CliRunner().invoke(app, ["status"], env={"SLIPSTREAM_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr == "Error: slipstream is not running\n  start it with 'slipstream up --detach'\n"


def test_bad_settings_are_one_error_line(tmp_path: Path) -> None:
    env = {"SLIPSTREAM_HOME": str(tmp_path), "SLIPSTREAM_HTTP_PORT": "eighty"}
    for argv in (["status"], ["up"]):
        result = CliRunner().invoke(app, argv, env=env)
        assert result.exit_code == 1
        assert result.stderr == "Error: SLIPSTREAM_HTTP_PORT has value 'eighty': not a whole number\n"


def test_usage_errors_exit_2(cli: Run) -> None:
    assert cli("jobs").exit_code == 2
    assert cli("status", "--nope").exit_code == 2


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"], ["db", "--help"], ["db", "list", "--help"]])
def test_help_still_works_with_flags_only_defaults(cli: Run, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_blueprint_commands_are_registered() -> None:
    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"validate", "plan", "import", "db", "env", "status", "logs", "jobs"} <= names


def events_then(statuses: list[str], events: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Route answers: the deploy moves through ``statuses``; events are handed out once each."""
    polls = iter(statuses)
    last = {"status": statuses[0]}

    def deploy(request: httpx.Request) -> dict[str, Any]:
        last["status"] = next(polls, last["status"])
        return {"deploy": {**DEPLOY, "status": last["status"], "message": "health check failed: 503"}}

    def evs(request: httpx.Request) -> dict[str, Any]:
        after = int(request.url.params["after"])
        return {"events": [e for e in events if e["id"] > after]}

    return deploy, evs


EVENTS = [
    {"id": 1, "kind": "step", "message": "-----> Building web"},
    {"id": 2, "kind": "build", "message": "pip install -r requirements.txt"},
    {"id": 3, "kind": "step", "message": "-----> Health check failed"},
]


@pytest.mark.parametrize("failed", sorted(common.FAILED))
def test_wait_for_deploy_prints_the_transcript_and_fails(api: FakeApi, failed: str) -> None:
    deploy, evs = events_then(["building", "health_check", failed], EVENTS)
    api.route("GET", "/v1/deploys/7", deploy)
    api.route("GET", "/v1/deploys/7/events", evs)
    one = typer.Typer()

    @one.command()
    def wait() -> None:
        common.wait_for_deploy(common.client(), {**DEPLOY, "status": "queued"})

    result = CliRunner().invoke(one, [])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "-----> Building web",
        "       pip install -r requirements.txt",
        "-----> Health check failed",
    ]
    assert result.stderr.splitlines()[-2:] == [
        f"Error: deploy 7 {failed}: health check failed: 503",
        "  the live release is unchanged; see 'slipstream deploys web'",
    ]


def test_deploy_waits_until_live(cli: Run, api: FakeApi) -> None:
    deploy, evs = events_then(["building", "live"], EVENTS[:2])
    api.route("POST", "/v1/deploys", {"deploy": {**DEPLOY, "status": "queued"}})
    api.route("GET", "/v1/deploys/7", deploy)
    api.route("GET", "/v1/deploys/7/events", evs)
    result = cli("deploy", "web")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["-----> Building web", "       pip install -r requirements.txt"]


def run_python(code: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_command_modules_import_common_not_main() -> None:
    """db and env load without the app module (no import cycle through cli.app)."""
    loaded = run_python("import sys, slipstream.cli.db, slipstream.cli.env; print('slipstream.cli.app' in sys.modules)")
    assert loaded.strip() == "False"


def test_status_without_a_daemon_imports_only_what_it_needs(tmp_path: Path) -> None:
    """Start-up stays short: no httpx, Rich, pydantic (see ``FLAGS_ONLY``), blueprint or daemon for a
    command that fails before it asks the daemon anything."""
    code = (
        "import sys\n"
        "sys.argv = ['slipstream', 'status']\n"
        "from slipstream.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('httpx', 'rich', 'pydantic', 'slipstream.blueprint', 'slipstream.daemon', 'yaml')\n"
        "print(sorted(m for m in sys.modules for h in heavy if m == h or m.startswith(h + '.')))\n"
    )
    env_home = f"import os; os.environ['SLIPSTREAM_HOME'] = {str(tmp_path)!r}\n"
    assert run_python(env_home + code).strip() == "[]"


def test_env_set_takes_a_secret_from_stdin_or_a_file_never_from_argv(cli: Run, api: FakeApi, tmp_path: Path) -> None:
    api.route("POST", "/v1/services/web/env", {"deploy": None})
    (tmp_path / "key.pem").write_text("-----BEGIN KEY-----\nabc\n")
    result = cli(
        "env",
        "set",
        "web",
        "TOKEN",
        "MODE=on",
        "--from-file",
        f"TLS_KEY={tmp_path / 'key.pem'}",
        input="s3cret-from-stdin\n",
    )
    assert result.exit_code == 0, result.stderr
    body = json.loads(api.requests[-1].content)
    assert body == {
        "set": {"TOKEN": "s3cret-from-stdin", "MODE": "on", "TLS_KEY": "-----BEGIN KEY-----\nabc\n"},
        "unset": [],
    }
    assert "s3cret" not in result.stdout + result.stderr
    two = cli("env", "set", "web", "A", "B", input="x\n")
    assert two.exit_code == 1 and "only one KEY can read its value from stdin" in two.stderr
