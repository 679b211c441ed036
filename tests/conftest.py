"""Markers by where a test lives, so ``make test-fast`` can pick the in-process tests.

- ``e2e``: drives the real daemon, HAProxy, PostgreSQL and apps over loopback;
- ``real``: starts a real binary or process (PostgreSQL, Caddy, a build, an instance);
- ``slow``: fuzzing with thousands of generated inputs.
``make test`` runs everything; ``make test-fast`` runs what is none of these (in seconds).
"""

from __future__ import annotations

from pathlib import Path

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).relative_to(ROOT).as_posix()
        for prefix, marker in BY_PATH.items():
            if rel.startswith(prefix):
                item.add_marker(getattr(pytest.mark, marker))
