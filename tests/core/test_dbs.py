from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from slipstream.databases.pitr import BaseBackup
from slipstream.engine.dbs import DatabaseManager
from slipstream.secrets import Masker, SecretBox
from slipstream.settings import load_settings
from slipstream.state import Store


class FakeCluster:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.bases: list[BaseBackup] = []
        self.pruned: list[int] = []

    def base_backups(self) -> list[BaseBackup]:
        return sorted(self.bases, key=lambda b: -b.finished_at)

    def base_backup(self) -> BaseBackup:
        self.bases.append(BaseBackup(f"base-{len(self.bases)}", Path("/nowhere"), time.time(), time.time(), "", 1))
        return self.bases[-1]

    def prune_base_backups(self, keep: int) -> list[BaseBackup]:
        self.pruned.append(keep)
        return []

    starts = 0
    killed = False

    def start(self) -> None:
        self.starts += 1
        self.killed = False

    def gone(self) -> bool:
        return self.killed

    def server_major_version(self) -> int:
        return 15

    def set_access(self, allow) -> bool:  # type: ignore[no-untyped-def]
        self.access = dict(allow)
        return True

    def ensure_database(self, name: str, *, database_name: str | None, user: str | None, password: str):  # type: ignore[no-untyped-def]
        from slipstream.databases import DatabaseInfo

        self.created.append(name)
        return DatabaseInfo(name, "127.0.0.1", 5555, database_name or name, user or name, password)


@pytest.fixture
def mgr(tmp_path: Path) -> DatabaseManager:
    settings = load_settings({"SLIPSTREAM_HOME": str(tmp_path)})
    m = DatabaseManager(settings, Store(tmp_path / "s.db", SecretBox(tmp_path / "k")), Masker())
    m._cluster = FakeCluster()  # type: ignore[assignment]
    return m


def test_major_version_mismatch_is_a_warning_and_runs_on_the_machines(mgr: DatabaseManager) -> None:
    note = mgr.version_note("main", 17)
    assert note is not None and "asks for postgresMajorVersion 17; this machine runs PostgreSQL 15" in note
    assert mgr.version_note("main", "15") is None and mgr.version_note("main", None) is None
    mgr.ensure("main", major_version=17)
    assert mgr.cluster.created == ["main"]  # type: ignore[attr-defined]


def test_password_is_kept_and_masked(mgr: DatabaseManager) -> None:
    a = mgr.ensure("main", major_version="15")  # type: ignore[arg-type]
    b = mgr.ensure("main")
    assert a.password == b.password and len(a.password) >= 40
    assert "********" in mgr.masker.mask(f"url {a.connection_string()}")
    assert a.password not in mgr.masker.mask(a.connection_string())


def test_base_backups_follow_the_backup_interval(mgr: DatabaseManager) -> None:
    fake: FakeCluster = mgr.cluster  # type: ignore[assignment]
    mgr._scheduled_base_backup()
    assert fake.bases == []  # no database yet: nothing to recover
    mgr.ensure("main")
    mgr._scheduled_base_backup()
    mgr._scheduled_base_backup()
    assert len(fake.bases) == 1 and fake.pruned == [7]  # the second call is inside the interval
    fake.bases[0] = replace(fake.bases[0], finished_at=time.time() - mgr.backup_interval_s - 1)
    mgr._scheduled_base_backup()
    assert len(fake.bases) == 2 and fake.pruned == [7, 7]
    assert any("base backup base-1" in e["message"] for e in mgr.store.events(limit=50))


def test_ip_allow_lists_are_kept_and_applied_together(mgr: DatabaseManager) -> None:
    fake: FakeCluster = mgr.cluster  # type: ignore[assignment]
    mgr.ensure("main", ip_allow_list=["10.0.0.0/8"])
    mgr.ensure("other", ip_allow_list=["203.0.113.7/32"])
    assert fake.access == {"main": ("main", "main", ["10.0.0.0/8"]), "other": ("other", "other", ["203.0.113.7/32"])}
    mgr.ensure("main")  # the list was emptied in the blueprint: loopback only again
    assert fake.access == {"other": ("other", "other", ["203.0.113.7/32"])}


def test_a_killed_cluster_is_started_again_only_once_it_was_started(mgr: DatabaseManager) -> None:
    cluster = mgr._cluster
    assert isinstance(cluster, FakeCluster)
    cluster.killed = True
    assert mgr.ensure_running() is False and cluster.starts == 0  # never started here: not ours to start
    mgr.ensure_started()
    assert mgr.ensure_running() is False and cluster.starts == 1  # running
    cluster.killed = True
    assert mgr.ensure_running() is True and cluster.starts == 2 and not cluster.gone()
    assert "PostgreSQL was not running; started again" in [e["message"] for e in mgr.store.events()]
