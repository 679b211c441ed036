"""The CLI against a remote daemon (SLIPSTREAM_API_URL), in process: the token goes with every
request to that URL, paths must name files on the daemon's machine, local-only commands say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.cli import common
from slipstream.cli.app import app
from slipstream.cli.client import Client
from slipstream.errors import InvalidInput
from slipstream.settings import Settings
from tests.cli.fakeapi import DEPLOY, FakeApi

URL = "https://build-host:8443"
TOKEN = "slp_0a1b2c3d_" + "x" * 43


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    fake = FakeApi()
    settings = Settings(home=tmp_path / "nothing-here", api_url=URL, token=TOKEN)
    monkeypatch.setattr(common, "make_client", lambda: Client(settings, transport=fake.transport()))
    return fake


def test_requests_go_to_the_url_with_the_token(remote: FakeApi) -> None:
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.stderr
    (request,) = remote.requests
    assert str(request.url) == f"{URL}/v1/status"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_apply_sends_an_absolute_path_as_given_and_refuses_a_relative_one(remote: FakeApi) -> None:
    remote.route("POST", "/v1/apply", {"project": "shop", "deploys": [], "skipped": [], "warnings": []})
    refused = CliRunner().invoke(app, ["apply", "render.yaml"])
    assert refused.exit_code == 1 and "reads files on its own machine" in refused.stderr
    assert remote.requests == []
    done = CliRunner().invoke(app, ["apply", "/srv/shop/render.yaml"])
    assert done.exit_code == 0, done.stderr
    assert remote.requests[0].read() == b'{"blueprint":"/srv/shop/render.yaml","project":null}'


def test_deploy_does_not_pick_up_a_local_render_yaml(
    remote: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "render.yaml").write_text("services: []\n")
    remote.route("POST", "/v1/deploys", {"deploy": {**DEPLOY, "status": "queued"}})
    result = CliRunner().invoke(app, ["deploy", "web", "--no-wait"])
    assert result.exit_code == 0, result.stderr
    assert b'"blueprint":null' in remote.requests[0].read()


@pytest.mark.parametrize("args", [["db", "psql", "main"], ["kv", "cli", "cache"]])
def test_local_only_commands_say_so(remote: FakeApi, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "SLIPSTREAM_API_URL" in result.stderr
    assert remote.requests == []


def test_up_refuses_to_start_a_daemon_while_pointed_at_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr("slipstream.daemon.run_daemon", started.append)  # never a real daemon here
    env = {"SLIPSTREAM_HOME": str(tmp_path), "SLIPSTREAM_API_URL": URL}
    result = CliRunner().invoke(app, ["up"], env=env)
    assert result.exit_code == 1 and f"SLIPSTREAM_API_URL points at {URL}" in result.stderr
    assert started == []


def test_a_url_without_a_token_is_an_error_before_any_request(tmp_path: Path) -> None:
    client = Client(Settings(home=tmp_path, api_url=URL))
    with pytest.raises(InvalidInput, match="SLIPSTREAM_TOKEN is not set"):
        client.get("/v1/status")
    missing_ca = Client(Settings(home=tmp_path, api_url=URL, token=TOKEN, api_ca=tmp_path / "ca.crt"))
    with pytest.raises(InvalidInput, match="does not exist"):
        missing_ca.get("/v1/status")


def test_the_local_client_resolves_paths_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Client(Settings(home=tmp_path)).daemon_path(Path("render.yaml")) == str(tmp_path / "render.yaml")
