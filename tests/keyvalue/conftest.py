"""Fixtures: real redis-server processes under a private temp dir, on free loopback ports, always stopped."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slipstream.keyvalue import KeyValueServers
from slipstream.keyvalue.commands import find_redis_server
from slipstream.runtime.backoff import BackoffPolicy


@pytest.fixture(scope="session")
def kv_base() -> Iterator[Path]:
    """A private temp dir for this session's servers (the servers make it traversable themselves).

    Not pytest's tmp_path: every pytest start on the machine resets /tmp/pytest-of-<user> to 0700,
    which would cut a running server (user ``redis`` when root) off its data directory.
    """
    base = Path(tempfile.mkdtemp(prefix="slipstream-kvtest-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def log_tails(managers: list[KeyValueServers], lines: int = 20) -> str:
    """The end of every server's log, for a failing test's output."""
    out = []
    for manager in managers:
        for name in manager.names():
            log = manager.server(name).log
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {log} ---\n" + "\n".join(tail))
    return "\n".join(out)


@pytest.fixture
def new_servers(kv_base: Path) -> Iterator[Callable[..., KeyValueServers]]:
    """A factory of managers (a fresh root each, or a given one); every server is stopped at teardown."""
    find_redis_server()  # a clear Unavailable when redis-server is not installed
    made: list[KeyValueServers] = []

    def factory(root: Path | None = None) -> KeyValueServers:
        root = root or Path(tempfile.mkdtemp(prefix="kv-", dir=kv_base)) / "keyvalue"
        made.append(KeyValueServers(root, traverse_root=kv_base, backoff=BackoffPolicy(initial=0.05, maximum=0.2)))
        return made[-1]

    try:
        yield factory
    finally:
        print(log_tails(made))  # pytest shows it only when the test failed
        for manager in made:
            manager.stop_all()


@pytest.fixture
def servers(new_servers: Callable[..., KeyValueServers]) -> KeyValueServers:
    """One manager on a fresh root."""
    return new_servers()
