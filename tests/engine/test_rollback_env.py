"""Rollbacks (an earlier build again, no rebuild) and config deploys from 'env set' (the same build)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from slipstream.errors import InvalidInput, NotFound, SlipstreamError
from slipstream.secrets import MASK
from slipstream.states import DeployKind, DeployStatus

from .harness import Rig, render_yaml, web

LIVE, DEACTIVATED = DeployStatus.LIVE, DeployStatus.DEACTIVATED
TOKEN = "tok-5ecret-value-0042"
TEXT = render_yaml(
    web(
        preDeployCommand="migrate",
        envVars=[{"key": "GREETING", "value": "hello"}, {"key": "WORKERS", "value": "2"}],
        envManifest={"GREETING": {}, "WORKERS": {"type": "int"}},
    )
)


def env_of(rig: Rig, iid: str) -> dict[str, str]:
    """The environment the live pretend process of ``iid`` was started with."""
    return dict(next(p.spec.env for p in rig.host.running() if p.spec.instance_id == iid))


def test_rollback_runs_an_earlier_build_without_rebuilding_or_waiting(rig: Rig) -> None:
    rig.retime(min_healthy_s=0.05)
    first = rig.finish(rig.deploy("web", TEXT))
    second = rig.finish(rig.deploy("web", TEXT))
    assert "min_healthy" in second.steps  # a deploy stays healthy a moment before its flip
    d = rig.engine.rollback("web")
    rec = rig.finish(d)
    assert (rec.kind, rec.status, rec.build_id, rec.rollback_of, rec.source) == (
        DeployKind.ROLLBACK,
        LIVE,
        first.build_id,
        first.id,
        "rollback to deploy 1",
    )
    assert (rig.live("web"), rig.status(second.id)) == (d, DEACTIVATED)
    assert [s.build_id for s in rig.builder.specs] == [1, 2]  # nothing was built again
    assert rig.driver.calls.count(("run_once", "migrate")) == 2  # no pre-deploy for a rollback
    assert "min_healthy" not in rec.steps
    said = rig.messages(d)
    assert "-----> Reusing build 1 (commit directory), no rebuild" in said
    assert "       deploy 1 ran this release live before: no stability wait" in said
    started = [p.spec for p in rig.host.running()]
    assert [(s.instance_id, s.cwd) for s in started] == [("web-d3-1", rig.settings.builds_dir / "web" / "1" / "src")]


def test_rollback_can_run_the_pre_deploy_command_when_asked(rig: Rig) -> None:
    rig.finish(rig.deploy("web", TEXT))
    rig.finish(rig.deploy("web", TEXT))
    assert rig.finish(rig.engine.rollback("web", to=1, with_pre_deploy=True)).status == LIVE
    assert rig.driver.calls.count(("run_once", "migrate")) == 3


ROLLBACK_REFUSALS: dict[str, tuple[Callable[[Rig], Any], type[SlipstreamError], str]] = {
    "unknown deploy": (lambda rig: rig.engine.rollback("web", to=9), NotFound, "deploy 9 is not a deploy of web"),
    "a failed deploy": (
        lambda rig: rig.engine.rollback("web", to=2),
        InvalidInput,
        "deploy 2 never went live (build_failed); pick a successful deploy",
    ),
    "nothing earlier": (
        lambda rig: rig.engine.rollback("web"),
        NotFound,
        "web has no earlier successful deploy to roll back to",
    ),
    "unknown service": (lambda rig: rig.engine.rollback("nope"), NotFound, "unknown service 'nope'"),
}


@pytest.mark.parametrize(("call", "error", "message"), ROLLBACK_REFUSALS.values(), ids=ROLLBACK_REFUSALS.keys())
def test_a_refused_rollback_records_nothing(
    rig: Rig, call: Callable[[Rig], Any], error: type[SlipstreamError], message: str
) -> None:
    rig.finish(rig.deploy("web", TEXT))
    rig.builder.failures["web"] = 1
    rig.finish(rig.deploy("web", TEXT))
    with pytest.raises(error) as info:
        call(rig)
    assert info.value.message == message
    assert [d.id for d in rig.store.deploys("web")] == [2, 1]


# -- env set: a config deploy from the same build -----------------------------------------------------
def test_env_set_rolls_out_the_same_build_with_the_new_values(rig: Rig) -> None:
    first = rig.finish(rig.deploy("web", TEXT))
    d = rig.engine.set_env("web", {"API_TOKEN": TOKEN, "GREETING": "hi"})
    assert d is not None
    rec = rig.finish(d)
    assert (rec.kind, rec.status, rec.build_id, rec.source, rec.with_pre_deploy) == (
        DeployKind.CONFIG,
        LIVE,
        first.build_id,
        "env change: API_TOKEN set, GREETING set",
        False,
    )
    assert len(rig.builder.specs) == 1 and rig.driver.calls.count(("run_once", "migrate")) == 1
    env = env_of(rig, "web-d2-1")
    assert (env["API_TOKEN"], env["GREETING"], env["WORKERS"]) == (TOKEN, "hi", "2")
    assert rig.engine.env("web") == [
        {"key": "API_TOKEN", "value": MASK, "source": "env set"},
        {"key": "GREETING", "value": MASK, "source": "env set"},
        {"key": "WORKERS", "value": MASK, "source": "blueprint"},
    ]
    unset = rig.engine.set_env("web", {}, unset=["API_TOKEN"])
    assert unset is not None and rig.finish(unset).status == LIVE
    assert "API_TOKEN" not in env_of(rig, "web-d3-1")


def test_env_values_never_reach_the_transcript(rig: Rig) -> None:
    rig.finish(rig.deploy("web", TEXT))
    rig.app_prints("web-d2-1", f"booting with token {TOKEN}")
    d = rig.engine.set_env("web", {"API_TOKEN": TOKEN})
    assert d is not None and rig.finish(d).status == LIVE
    said = [e["message"] for e in rig.store.events(service="web", limit=10_000)]
    assert f"[web-d2-1] booting with token {MASK}" in said
    assert not [m for m in said if TOKEN in m]
    for path in rig.settings.home.glob("state.db*"):
        assert TOKEN.encode() not in path.read_bytes()


ENV_REFUSALS: dict[str, tuple[dict[str, str], list[str], str]] = {
    "a bad key": ({"BAD KEY": "x"}, [], "not a valid env key: BAD KEY"),
    "a value the manifest refuses": ({"WORKERS": "lots-of-them"}, [], "would not fit its envManifest"),
    "unsetting a required key": ({}, ["GREETING"], "would not fit its envManifest"),
}


@pytest.mark.parametrize(("values", "unset", "message"), ENV_REFUSALS.values(), ids=ENV_REFUSALS.keys())
def test_a_refused_env_change_saves_nothing(rig: Rig, values: dict[str, str], unset: list[str], message: str) -> None:
    rig.finish(rig.deploy("web", TEXT))
    kept = rig.store.kept_values()
    with pytest.raises(InvalidInput) as info:
        rig.engine.set_env("web", values, unset)
    assert message in info.value.message and "lots-of-them" not in str(info.value)
    assert (rig.store.kept_values(), [d.id for d in rig.store.deploys("web")]) == (kept, [1])
    assert all(row["source"] == "blueprint" for row in rig.engine.env("web"))


def test_env_set_checks_the_manifest_before_the_first_successful_deploy(rig: Rig) -> None:
    rig.builder.failures["web"] = 1
    assert rig.finish(rig.deploy("web", TEXT)).status == DeployStatus.BUILD_FAILED
    kept = rig.store.kept_values()
    with pytest.raises(InvalidInput, match="would not fit its envManifest"):
        rig.engine.set_env("web", {"WORKERS": "lots-of-them"})
    assert rig.store.kept_values() == kept
