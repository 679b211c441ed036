"""Fixtures for API tests: the real ASGI app around an in-process engine (tests.engine.harness)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from slipstream.api.app import create_app
from tests.engine.conftest import rig, rigs, workdir  # noqa: F401  (the engine's fixtures, shared)
from tests.engine.harness import Rig


class Api:
    """A blocking client for one daemon's API (httpx over ASGI: no socket, no server), and the
    shutdowns the API asked the daemon for."""

    def __init__(self, daemon: Rig) -> None:
        self.rig = daemon
        self.shutdowns: list[bool] = []
        self.app = create_app(daemon.engine, self.shutdowns.append)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            # raise_app_exceptions=False: answer a 500 as the daemon's server would, not raise it here
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://slipstream") as client:
                return await client.request(method, path, **kw)

        return asyncio.run(send())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


@pytest.fixture
def api(rig: Rig) -> Api:  # noqa: F811
    return Api(rig)
