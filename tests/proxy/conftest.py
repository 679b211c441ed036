"""Fixtures for the proxy tests: tiny loopback upstreams and a real HAProxy on a free port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from proxy_support import EchoUpstream, Upstream, free_port

from slipstream.proxy import Proxy

T = TypeVar("T")


def _factory(cls: Callable[[str], T]) -> Iterator[Callable[[str], T]]:
    """A fixture body: ``make(ident)`` starts one server of ``cls``; all are closed at the end."""
    started: list[T] = []

    def make(ident: str) -> T:
        started.append(cls(ident))
        return started[-1]

    try:
        yield make
    finally:
        for up in started:
            up.close()  # type: ignore[attr-defined]


@pytest.fixture
def upstream() -> Iterator[Callable[[str], Upstream]]:
    """Factory starting upstreams answering their id; all are stopped at the end."""
    yield from _factory(Upstream)


@pytest.fixture
def echo_upstream() -> Iterator[Callable[[str], EchoUpstream]]:
    """Factory starting TCP echo upstreams answering with their id; all are stopped at the end."""
    yield from _factory(EchoUpstream)


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
