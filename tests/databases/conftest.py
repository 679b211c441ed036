"""Fixtures: one real PostgreSQL cluster per session in a temp dir on a free loopback port."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slipstream.databases import Cluster, DatabaseInfo
from slipstream.databases.commands import find_pg_bin


@pytest.fixture(scope="session")
def pg_base() -> Iterator[Path]:
    """A private temp dir (0700, made traversable by the Cluster itself) for this session's clusters.

    Not pytest's tmp_path: every pytest start on the machine (other engineers' too) resets
    /tmp/pytest-of-<user> to 0700, which would cut a running server off its data directory.
    """
    base = Path(tempfile.mkdtemp(prefix="slipstream-dbtest-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_cluster(base: Path, label: str, **kwargs: object) -> Cluster:
    """A Cluster under a fresh dir inside ``base`` (not started)."""
    home = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=base))
    return Cluster(home / "postgres", home / "backups", traverse_root=base, **kwargs)  # type: ignore[arg-type]


def log_tail(cluster: Cluster, lines: int = 40) -> str:
    """The end of the cluster's server log, for failure output."""
    server = cluster._server
    if server is None or not server.log.exists():
        return ""
    return "\n".join(server.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def cluster(pg_base: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The shared cluster, started once and always stopped."""
    find_pg_bin()  # a clear Unavailable when PostgreSQL is not installed
    c = make_cluster(pg_base, "pg")
    try:
        c.start()
        yield c
    finally:
        if request.session.testsfailed:
            print(f"\n--- postgres.log (tail) ---\n{log_tail(c)}")
        c.stop()


@pytest.fixture
def new_cluster(pg_base: Path) -> Iterator[Callable[..., Cluster]]:
    """A factory of extra clusters (own temp dirs, not started); every one is stopped at teardown."""
    made: list[Cluster] = []

    def factory(label: str = "pg-extra", **kwargs: object) -> Cluster:
        made.append(make_cluster(pg_base, label, **kwargs))
        return made[-1]

    try:
        yield factory
    finally:
        for c in made:
            c.stop()


@pytest.fixture
def db(cluster: Cluster) -> Iterator[DatabaseInfo]:
    """A fresh database + role for one test, dropped afterwards."""
    info = cluster.ensure_database(f"t{secrets.token_hex(4)}-db", password=secrets.token_urlsafe(16))
    try:
        yield info
    finally:
        cluster.drop_database(info)
