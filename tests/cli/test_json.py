"""Every listing command answers ``--json``: it parses, has stable keys, and keeps values masked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli.conftest import Run
from tests.cli.fakeapi import LOGS, MASK, FakeApi, error, log_line

# (argv, the keys of each listed item, how to get the list from the parsed output)
LISTINGS: list[tuple[list[str], set[str], str | None]] = [
    (["status", "--json"], {"name", "type", "runtime", "url", "live_deploy", "active_deploy", "instances"}, "services"),
    (
        ["deploys", "web", "--json"],
        {
            "id",
            "service",
            "kind",
            "status",
            "build_id",
            "commit",
            "source",
            "rollback_of",
            "steps",
            "message",
            "created_at",
            "finished_at",
        },
        None,
    ),
    (["db", "list", "--json"], {"name", "database", "user", "host", "port", "url", "backups", "last_backup"}, None),
    (
        ["db", "backups", "main", "--json"],
        {"id", "database", "kind", "created_at", "size_bytes", "status", "error"},
        "backups",
    ),
    (["jobs", "rollup", "--json"], {"id", "trigger", "status", "exit_code", "started_at", "finished_at"}, None),
    (["env", "list", "web", "--json"], {"key", "value", "source"}, None),
]


@pytest.mark.parametrize(("argv", "keys", "field"), LISTINGS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_listing_json_parses_with_stable_keys(cli: Run, argv: list[str], keys: set[str], field: str | None) -> None:
    result = cli(*argv)
    assert result.exit_code == 0, result.stderr
    data: Any = json.loads(result.stdout)
    items = data[field] if field else data
    assert isinstance(items, list) and items
    for item in items:
        assert set(item) == keys
    assert "\x1b[" not in result.stdout  # no terminal styling in machine output


def test_json_keeps_values_masked_as_the_api_sent_them(cli: Run) -> None:
    env = json.loads(cli("env", "list", "web", "--json").stdout)
    assert {e["value"] for e in env} == {MASK}
    (db,) = json.loads(cli("db", "list", "--json").stdout)
    assert db["url"] == f"postgresql://main:{MASK}@127.0.0.1:5433/main"


def test_jobs_json_leaves_out_internal_paths(cli: Run) -> None:
    (run,) = json.loads(cli("jobs", "rollup", "--json").stdout)
    assert run == {
        "id": 2,
        "trigger": "manual",
        "status": "succeeded",
        "exit_code": 0,
        "started_at": 1_700_000_000.0,
        "finished_at": 1_700_000_002.5,
    }


def test_jobs_run_json(cli: Run) -> None:
    assert json.loads(cli("jobs", "run", "rollup", "--json").stdout) == {"service": "rollup", "run": "started"}


def test_db_backups_json_has_the_recovery_window(cli: Run) -> None:
    data = json.loads(cli("db", "backups", "main", "--json").stdout)
    assert data["recovery"] == {
        "from": 1_700_000_100.0,
        "base_backups": [{"id": "base-1", "finished_at": 1_700_000_100.0, "size_bytes": 1 << 20}],
    }


def test_logs_json_is_one_object_a_line(cli: Run) -> None:
    result = cli("logs", "web", "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records == LOGS["lines"]  # the contract: time, service, deploy, instance, stream, level, message
    assert all({"time", "service", "deploy", "instance", "stream", "level", "message"} <= set(r) for r in records)


def test_logs_text_prints_lines_exactly(cli: Run) -> None:
    """No Rich markup or emoji codes applied to app output: '[tag]' and ':b:' stay as written."""
    result = cli("logs", "web")
    assert result.stdout.splitlines() == [
        "2026-12-02 13:00:01.000 [web-d7-1] GET / 200",
        f"2026-12-02 13:00:02.000 [web-d7-1] password={MASK} [tag] :b: kept",
        "2026-12-02 13:00:03.000 [platform] deploy 7 is live",
    ]


def test_control_characters_from_apps_never_reach_the_terminal(cli: Run, api: FakeApi) -> None:
    sneaky = "\x1b[2J\x1b]0;owned\x07done\r\x9b31m\tkept"  # clear screen, set title, CR, C1 CSI
    api.route("GET", "/v1/services/web/logs", {"lines": [log_line(1, sneaky)], "cursor": 1})
    result = cli("logs", "web")
    assert result.stdout == "2026-12-02 13:00:01.000 [web-d7-1] \\x1b[2J\\x1b]0;owned\\x07done\\x0d\\x9b31m\tkept\n"
    api.route("GET", "/v1/services/nope/deploys", error(404, "no service named 'n\x1b[31mope'"))
    assert cli("deploys", "nope").stderr == "Error: no service named 'n\\x1b[31mope'\n"


def test_logs_follow_json_streams_new_lines(cli: Run, api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(
        [
            {"lines": [log_line(6, "first")], "cursor": 6},
            {"lines": [log_line(7, "second", instance="web-d8-1")], "cursor": 7},
        ]
    )

    def next_answer(request: Any) -> dict[str, Any]:
        try:
            return next(answers)
        except StopIteration:
            raise KeyboardInterrupt from None  # the operator's ^C ends a follow

    api.route("GET", "/v1/services/web/logs", next_answer)
    monkeypatch.setattr("slipstream.cli.app.time.sleep", lambda s: None)
    result = cli("logs", "web", "-f", "--json")
    assert result.exit_code == 0, result.stderr
    assert [(r["instance"], r["message"]) for r in map(json.loads, result.stdout.splitlines())] == [
        ("web-d7-1", "first"),
        ("web-d8-1", "second"),  # the follow goes on across deploys
    ]
    assert api.requests[-1].url.params["after"] == "7"
