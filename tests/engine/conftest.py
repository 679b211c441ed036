"""Fixtures for in-process engine tests: ``rig`` (one daemon on fakes) and ``rigs`` (more, or a restart)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import Rig, make_rig
from tests.polling import wait_for

RigFactory = Callable[..., Rig]
RAM_DISK = Path("/dev/shm")


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where a test's daemons keep their state: a RAM disk when there is one (every deploy
    transition is a synced SQLite write; what is tested here is the engine, not the disk)."""
    if not (RAM_DISK.is_dir() and os.access(RAM_DISK, os.W_OK)):
        yield request.getfixturevalue("tmp_path")
        return
    path = Path(tempfile.mkdtemp(prefix="slipstream-test-", dir=RAM_DISK))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def rigs(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RigFactory]:
    """Make daemons on one state directory (``rigs(host=old.host, proxy=old.proxy)`` restarts one);
    instance ports count up from 20001; every daemon is closed at the end."""
    ports = itertools.count(20001)
    monkeypatch.setattr("slipstream.engine.instances.instance_port", lambda taken, low, high: next(ports))
    made: list[Rig] = []

    def make(**kw: Any) -> Rig:
        made.append(make_rig(workdir, **kw))
        return made[-1]

    before = set(threading.enumerate())
    yield make
    for r in reversed(made):
        r.close()
    # A runtime event may have left a thread that still writes (a readmission): let it end
    # before the state directory goes, except the threads of a killed daemon, which never end.
    frozen = [t for r in made for t in r.probes.frozen]
    wait_for(
        lambda: not [t for t in threading.enumerate() if t not in before and t not in frozen and t.is_alive()],
        timeout=3,
        what="the test's threads to end",
    )


@pytest.fixture
def rig(rigs: RigFactory) -> Rig:
    """One started daemon on fakes with short timings."""
    return rigs()
