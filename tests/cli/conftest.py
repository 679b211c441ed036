"""In-process CLI tests: the real Typer app against :class:`FakeApi` through ``common.make_client``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from slipstream.cli import common
from slipstream.cli.app import app
from slipstream.cli.client import Client
from slipstream.settings import Settings
from tests.cli.fakeapi import FakeApi

Run = Callable[..., Result]


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(common, "make_client", lambda: Client(Settings(home=tmp_path), transport=fake.transport()))
    return fake


@pytest.fixture
def cli(api: FakeApi) -> Run:
    """``cli("status", "--json")``: run the slipstream app in process; stdout and stderr apart."""

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), input=input)

    return run
