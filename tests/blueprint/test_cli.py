"""validate / plan / import through Typer, as the lead wires them with register()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from slipstream.cli.blueprint_cmds import register

GOOD = """\
databases:
  - name: db
services:
  - type: web
    name: api
    env: python
    startCommand: gunicorn app:app
    envVars:
      - {key: DATABASE_URL, fromDatabase: {name: db, property: connectionString}}
      - {key: API_TOKEN, value: "very-secret-token"}
"""
BAD = GOOD.replace("startCommand", "startComand")


def make_app(current: dict | None = None) -> typer.Typer:  # type: ignore[type-arg]
    app = typer.Typer()
    register(app, (lambda blueprint, project: current) if current is not None else None)
    return app


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    return tmp_path


def test_validate_valid(files: Path) -> None:
    result = CliRunner().invoke(make_app(), ["validate", str(files / "good.yaml")])
    assert result.exit_code == 0
    assert "is valid: 1 service, 1 database, 0 env var groups (1 warning)" in result.stdout
    assert "warning:" in result.stderr and "'env' is deprecated" in result.stderr


def test_validate_invalid(files: Path) -> None:
    result = CliRunner().invoke(make_app(), ["validate", str(files / "bad.yaml")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        f"error: {files / 'bad.yaml'}:7:5: services[0] (api).startComand: unknown key 'startComand' "
        "(hint: did you mean 'startCommand'?)" in result.stderr
    )
    assert "is invalid: 2 errors" in result.stderr


def test_validate_json(files: Path) -> None:
    result = CliRunner().invoke(make_app(), ["validate", "--json", str(files / "bad.yaml")])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert {e["message"] for e in data["errors"]} == {
        "unknown key 'startComand'",
        "missing required key 'startCommand' for a python web service",
    }
    ok = json.loads(CliRunner().invoke(make_app(), ["validate", "--json", str(files / "good.yaml")]).stdout)
    assert ok["valid"] is True and ok["services"] == ["api"] and len(ok["warnings"]) == 1


def test_validate_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(make_app(), ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "cannot read the file" in result.stderr


def test_plan_against_empty_and_given_state(files: Path) -> None:
    result = CliRunner().invoke(make_app(), ["plan", str(files / "good.yaml")])
    assert result.exit_code == 0
    assert "2 to create" in result.stdout and "very-secret-token" not in result.stdout
    assert "+ API_TOKEN=(secret)" in result.stdout
    current = {"services": {"api": {"type": "worker", "env_keys": []}}, "databases": {"db": {}}}
    result = CliRunner().invoke(make_app(current), ["plan", str(files / "good.yaml")])
    assert "~ type: 'worker' -> 'web'  (immutable)" in result.stdout
    data = json.loads(CliRunner().invoke(make_app(current), ["plan", "--json", str(files / "good.yaml")]).stdout)
    assert data["blocked"] is True


def test_plan_unknown_environment_and_invalid_file(files: Path) -> None:
    result = CliRunner().invoke(make_app(), ["plan", "--env", "prod", str(files / "good.yaml")])
    assert result.exit_code == 1 and "no environment named 'prod'" in result.stderr
    assert CliRunner().invoke(make_app(), ["plan", str(files / "bad.yaml")]).exit_code == 1


def test_import_procfile_and_fly(tmp_path: Path) -> None:
    app_dir = tmp_path / "shop"
    app_dir.mkdir()
    (app_dir / "Procfile").write_text("web: node server.js\n")
    (app_dir / "package.json").write_text("{}")
    out = app_dir / "render.yaml"
    result = CliRunner().invoke(make_app(), ["import", str(app_dir / "Procfile"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "runtime: node" in text and "name: shop" in text
    again = CliRunner().invoke(make_app(), ["import", str(app_dir / "Procfile"), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    (app_dir / "fly.toml").write_text('app = "shop"\n[http_service]\ninternal_port = 8080\n')
    result = CliRunner().invoke(make_app(), ["import", str(app_dir / "fly.toml"), "-o", "-"])
    assert result.exit_code == 0 and "value: '8080'" in result.stdout
    (app_dir / "notes.txt").write_text("x")
    assert CliRunner().invoke(make_app(), ["import", str(app_dir / "notes.txt")]).exit_code == 2
    (app_dir / "fly2.toml").write_text("app = [\n")
    assert CliRunner().invoke(make_app(), ["import", str(app_dir / "fly2.toml"), "-o", "-"]).exit_code == 1
