"""Markers by where a test lives, so ``make test-fast`` can pick the in-process tests, and how
``make test`` shares the tests between two pytest-xdist workers.

- ``e2e``: drives the real daemon, HAProxy, PostgreSQL and apps over loopback;
- ``real``: starts a real binary or process (PostgreSQL, Caddy, a build, an instance);
- ``slow``: fuzzing with thousands of generated inputs.
``make test`` runs everything; ``make test-fast`` runs what is none of these (in seconds).

On workers (``-n 2 --dist loadfile``) a file is one unit of work, so its module and session
fixtures are set up once per worker. Two files can run at once because everything a test starts
has its own temp home, free loopback ports and its own memory cgroup (named after the home); the
one store shared machine-wide is Podman's (images, the busybox base), so the files in ``PODMAN``
are one unit and run one after another. The units that start real processes are handed out
first, so a long end-to-end file never starts last while the other worker sits idle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent
BY_PATH: dict[str, str] = {
    "e2e/": "e2e",
    "proxy/test_proxy_haproxy.py": "e2e",
    "proxy/test_proxy_private.py": "e2e",
    "builds/test_python.py": "real",
    "builds/test_builder.py": "real",
    "databases/test_db_backups.py": "real",
    "databases/test_db_cluster.py": "real",
    "databases/test_db_pitr.py": "real",
    "databases/test_db_access.py": "real",
    "runtime/test_local.py": "real",
    "runtime/test_oneoff.py": "real",
    "static/test_static_instance.py": "real",
    "static/test_static_caddy.py": "real",
    "blueprint/test_fuzz.py": "slow",
}
PODMAN = ("podman/test_podman_driver.py", "podman/test_docker_build.py", "e2e/test_containers.py")
FIRST = ("e2e", "real", "slow")  # handed out in this order: the longest units first


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).relative_to(ROOT).as_posix()
        for prefix, marker in BY_PATH.items():
            if rel.startswith(prefix):
                item.add_marker(getattr(pytest.mark, marker))
    if hasattr(config, "workerinput"):  # an xdist worker: every worker sorts alike (a stable sort)
        items.sort(key=_rank)


def _rank(item: pytest.Item) -> int:
    return next((i for i, marker in enumerate(FIRST) if item.get_closest_marker(marker)), len(FIRST))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` with the Podman files as one unit and units in collection order."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "podman" if path.removeprefix("tests/") in PODMAN else path

    config.option.loadscopereorder = False  # keep the order above, not the most tests first
    return Scheduling(config, log)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp dir every user can traverse (0711): pytest's own lie under a 0700 directory, which a
    service's or the proxy's user could not cross."""
    root = Path(tempfile.mkdtemp(prefix="slipstream-open-"))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
