"""Retention (engine.retention): what stays on disk for rollbacks, collecting the rest, and pruning events."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slipstream.engine.retention import builds_to_keep
from slipstream.secrets import SecretBox
from slipstream.state.store import BuildRecord, DeployRecord, Store
from slipstream.states import DeployKind, DeployStatus

from .conftest import RigFactory
from .harness import render_yaml, web

S = DeployStatus


def build(i: int, status: str = "ok") -> BuildRecord:
    return BuildRecord(i, "web", None, None, None, [], {}, None, None, status, None)


def deploy(i: int, build_id: int | None, status: DeployStatus) -> DeployRecord:
    return DeployRecord(i, "web", DeployKind.DEPLOY, status, build_id, None, None, None, True, {}, None, 0.0, None)


@pytest.mark.parametrize(
    "builds, deploys, live, keep, kept",
    [
        # the live build and the newest `keep` other successful deploys' builds (rollback targets)
        ([build(i) for i in range(1, 6)], [deploy(i, i, S.DEACTIVATED) for i in range(1, 6)], None, 2, {4, 5}),
        ([build(i) for i in range(1, 6)], [deploy(i, i, S.DEACTIVATED) for i in range(1, 6)], 1, 2, {1, 4, 5}),
        # a rollback reuses build 1: one build, counted once
        (
            [build(1), build(2), build(3)],
            [
                deploy(1, 1, S.DEACTIVATED),
                deploy(2, 2, S.DEACTIVATED),
                deploy(3, 3, S.DEACTIVATED),
                deploy(4, 1, S.LIVE),
            ],
            4,
            1,
            {1, 3},
        ),
        # failed deploys are no rollback target; a deploy in progress keeps its build
        (
            [build(1), build(2), build(3), build(4, "building")],
            [deploy(1, 1, S.LIVE), deploy(2, 2, S.UPDATE_FAILED), deploy(3, 3, S.STARTING), deploy(4, 4, S.BUILDING)],
            1,
            1,
            {1, 3, 4},
        ),
        # the newest build failed: kept for a person to look at; older failed builds are not
        ([build(1), build(2, "failed"), build(3, "failed")], [deploy(1, 1, S.LIVE)], 1, 5, {1, 3}),
    ],
)
def test_builds_to_keep(
    builds: list[BuildRecord], deploys: list[DeployRecord], live: int | None, keep: int, kept: set[int]
) -> None:
    assert builds_to_keep(builds, deploys, live, keep) == kept


def test_old_builds_go_after_each_deploy_and_a_rollback_to_one_says_so(rigs: RigFactory) -> None:
    rig = rigs(builds_kept=2)
    text = render_yaml(web())
    ids = [rig.finish(rig.deploy("web", text)).id for _ in range(5)]
    builds = rig.settings.builds_dir / "web"
    assert sorted(int(p.name) for p in builds.iterdir()) == [3, 4, 5]  # the live one and two before it
    assert rig.builder.removed == [1, 2]
    assert [b.status for b in rig.store.builds("web")] == ["collected"] * 2 + ["ok"] * 3
    said = rig.messages(ids[3])
    assert "       removed 1 old build (0.0 MB)" in said
    assert rig.engine.collect_builds(dry_run=True) == []  # nothing left to collect
    rec = rig.finish(rig.engine.rollback("web", to=ids[0]))
    assert (rec.status, rec.message) == (S.UPDATE_FAILED, "build 1 is no longer on disk")
    assert rig.live("web") == ids[-1]
    assert rig.finish(rig.engine.rollback("web", to=ids[2])).status == S.LIVE  # a kept build still rolls back


def test_gc_on_demand_shows_then_frees(rigs: RigFactory) -> None:
    rig = rigs(builds_kept=5)
    text = render_yaml(web())
    for _ in range(4):
        rig.finish(rig.deploy("web", text))
    rig.retime(builds_kept=1)
    planned = rig.engine.collect_builds("web", dry_run=True)
    assert [c.build_id for c in planned] == [1, 2] and (rig.settings.builds_dir / "web" / "1").is_dir()
    done = rig.engine.collect_builds("web")
    assert [c.build_id for c in done] == [1, 2] and not (rig.settings.builds_dir / "web" / "1").exists()


def test_a_nearly_full_state_disk_refuses_the_build_and_keeps_the_live_release(rigs: RigFactory) -> None:
    rig = rigs()
    text = render_yaml(web())
    live = rig.finish(rig.deploy("web", text)).id
    rig.retime(min_free_mb=2**40)  # more than any disk has free
    rec = rig.finish(rig.deploy("web", text))
    assert rec.status == S.BUILD_FAILED and rec.build_id is None
    assert "has" in (rec.message or "") and "under SLIPSTREAM_MIN_FREE_MB" in (rec.message or "")
    assert rig.live("web") == live and len(rig.builder.specs) == 1  # nothing was built


# -- events -------------------------------------------------------------------------------------
def test_events_go_by_age_and_then_by_count(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", SecretBox(tmp_path / "master.key"))
    for i in range(10):
        store.event("deploy", f"event {i}", service="web")
    with store.tx() as c:  # the first three are 40 days old
        c.execute("UPDATE events SET ts = ts - 40 * 86400 WHERE message IN ('event 0', 'event 1', 'event 2')")
    assert store.prune_events(time.time() - 30 * 86400, keep=5) == 5
    assert [e["message"] for e in store.events(limit=100)] == [f"event {i}" for i in range(5, 10)]
    assert store.prune_events(time.time() - 30 * 86400, keep=5) == 0  # nothing more to do


def test_a_daemon_start_prunes_old_events(rigs: RigFactory) -> None:
    first = rigs()
    for i in range(150):
        first.store.event("instance", f"event {i}", service="web")
    with first.store.tx() as c:
        c.execute("UPDATE events SET ts = ts - 31 * 86400 WHERE message = 'event 149'")
    first.close()
    again = rigs(events_max=100, events_kept_days=30.0)  # starting prunes: the newest 100, and none too old
    messages = [e["message"] for e in again.store.events(limit=1000)]
    assert len(messages) == 100 and "event 149" not in messages and messages[0] == "event 49"
    assert again.engine.event_pruner.prune() == 0
