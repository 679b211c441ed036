"""The human output: tables and lines, with API text shown as written (never as Rich markup)."""

from __future__ import annotations

from tests.cli.conftest import Run
from tests.cli.fakeapi import DEPLOY, FakeApi


def test_status_table(cli: Run) -> None:
    result = cli("status")
    assert result.exit_code == 0, result.stderr
    assert "http://web.localhost:8080" in result.stdout
    assert "7 (live, 0123456789ab)" in result.stdout
    assert "web-d7-1 running/? pid=123 restarts=0" in result.stdout


def test_no_services_yet(cli: Run, api: FakeApi) -> None:
    api.route("GET", "/v1/status", {"services": [], "http_port": 8080})
    assert (
        cli("status").stdout == "No services yet. Deploy one with 'slipstream deploy NAME --blueprint render.yaml'.\n"
    )


def test_table_cells_are_text_not_markup(cli: Run, api: FakeApi) -> None:
    message = "[web-d8-1] exited with [bold]1[/bold]"
    api.route(
        "GET", "/v1/services/web/deploys", {"deploys": [{**DEPLOY, "status": "update_failed", "message": message}]}
    )
    assert message in cli("deploys", "web").stdout


def test_db_backups_table_and_recovery_window(cli: Run) -> None:
    out = cli("db", "backups", "main").stdout
    assert "main-20260101-000000" in out and "4,096" in out
    assert "point-in-time recovery: any time from 2023-11-14 22:15:00Z to now (1 base backup)" in out


def test_env_list_and_jobs_tables(cli: Run) -> None:
    env = cli("env", "list", "web").stdout
    assert "API_TOKEN" in env and "env set" in env and "********" in env
    jobs = cli("jobs", "rollup").stdout
    assert "manual" in jobs and "succeeded" in jobs and "2.5s" in jobs
