"""Fixtures for the proxy tests: tiny loopback upstreams and a real HAProxy on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from proxy_support import EchoUpstream, Upstream, free_port

from slipstream.proxy import Proxy


@pytest.fixture
def upstream() -> Iterator[Callable[[str], Upstream]]:
    """Factory starting upstreams answering their id; all are stopped at the end."""
    started: list[Upstream] = []

    def make(ident: str) -> Upstream:
        up = Upstream(ident)
        started.append(up)
        return up

    try:
        yield make
    finally:
        for up in started:
            up.close()


@pytest.fixture
def echo_upstream() -> Iterator[Callable[[str], EchoUpstream]]:
    """Factory starting TCP echo upstreams answering with their id; all are stopped at the end."""
    started: list[EchoUpstream] = []

    def make(ident: str) -> EchoUpstream:
        up = EchoUpstream(ident)
        started.append(up)
        return up

    try:
        yield make
    finally:
        for up in started:
            up.close()


@pytest.fixture
def proxy_dir(tmp_path: Path) -> Path:
    return tmp_path / "proxy"


@pytest.fixture
def proxy(proxy_dir: Path) -> Iterator[Proxy]:
    """A started HAProxy on a free loopback port (small backend pool), always stopped after."""
    p = Proxy(proxy_dir, free_port(), pool_size=8)
    try:
        p.start()
        yield p
    finally:
        p.stop(grace=2)
        cfg = proxy_dir / "haproxy.cfg"
        if cfg.exists():
            print(f"--- {cfg}\n{cfg.read_text()}")  # shown by pytest when a test failed
