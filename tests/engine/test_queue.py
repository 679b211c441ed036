"""The deploy queue: one deploy per service, the override and wait policies, cancel, and the seal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from slipstream.errors import NotFound
from slipstream.states import DeployStatus

from .conftest import RigFactory
from .harness import FAIL, PASS, Rig, render_yaml, web

LIVE, CANCELED = DeployStatus.LIVE, DeployStatus.CANCELED
TEXT = render_yaml(web(preDeployCommand="migrate"))


def switches(rig: Rig) -> list[tuple[object, ...]]:
    """Every traffic switch the proxy was asked for, in order."""
    return [c for c in rig.proxy.calls if c[0] == "switch"]


def test_override_cancels_a_deploy_waiting_in_its_health_gate(rig: Rig) -> None:
    first = rig.finish(rig.deploy("web", TEXT)).id
    rig.probes.answers["web-d2-1"] = FAIL
    rig.retime(health_deadline_s=60)
    second = rig.deploy("web", TEXT)
    rig.wait_said(second, "Waiting for health check")
    assert (rig.live("web"), rig.proxy.ready("web")) == (first, ["d1-1"])
    third = rig.deploy("web", TEXT)
    rec = rig.finish(second)
    assert (rec.status, rec.message) == (CANCELED, "overridden by deploy 3; the live release keeps serving")
    assert rig.finish(third).status == LIVE
    assert (rig.live("web"), rig.status(first)) == (third, DeployStatus.DEACTIVATED)
    # traffic went from deploy 1 straight to deploy 3; deploy 2 never took any
    assert switches(rig) == [("switch", "web", ("d1-1",), ()), ("switch", "web", ("d3-1",), ("d1-1",))]
    assert rig.running() == ["web-d3-1"] and rig.instances("web") == [("web-d3-1", "live")]


def test_wait_lets_the_running_deploy_finish_and_runs_only_the_newest(rigs: RigFactory) -> None:
    rig = rigs(overlap="wait")
    rig.finish(rig.deploy("web", TEXT))
    rig.probes.answers["web-d2-1"] = FAIL
    rig.retime(health_deadline_s=60)
    second = rig.deploy("web", TEXT)
    rig.wait_said(second, "Waiting for health check")
    third, fourth = rig.deploy("web", TEXT), rig.deploy("web", TEXT)
    assert [rig.status(d) for d in (second, third, fourth)] == [DeployStatus.HEALTH_CHECK, CANCELED, "queued"]
    assert rig.record(third).message == "superseded by deploy 4"
    rig.probes.answers["web-d2-1"] = PASS
    assert rig.finish(fourth).status == LIVE
    assert [rig.status(d) for d in (1, second, third, fourth)] == ["deactivated", "deactivated", CANCELED, LIVE]
    assert [s.build_id for s in rig.builder.specs] == [1, 2, 3]  # deploy 3 never built
    assert [c[2] for c in switches(rig)] == [("d1-1",), ("d2-1",), ("d4-1",)]


# -- cancel -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CancelPoint:
    arrange: Callable[[Rig], None]
    waits_for: str  # a transcript line: the deploy is there when it appears
    instances_started: list[str] = field(default_factory=list)


CANCEL_POINTS = {
    "during the build": CancelPoint(lambda rig: setattr(rig.builder, "seconds", 60), "-----> Building"),
    "during pre-deploy": CancelPoint(
        lambda rig: rig.driver.run_once_seconds.update(migrate=60), "-----> Running preDeployCommand: migrate"
    ),
    "in the health gate": CancelPoint(
        lambda rig: (rig.probes.answers.update({"web-d2-1": FAIL}), rig.retime(health_deadline_s=60)),
        "-----> Waiting for health check",
        ["web-d2-1"],
    ),
}


@pytest.mark.parametrize("point", CANCEL_POINTS.values(), ids=CANCEL_POINTS.keys())
def test_cancel_stops_a_deploy_before_its_flip(rig: Rig, point: CancelPoint) -> None:
    first = rig.finish(rig.deploy("web", TEXT)).id
    rig.driver.calls.clear()
    point.arrange(rig)
    d = rig.deploy("web", TEXT)
    rig.wait_said(d, point.waits_for)
    assert rig.engine.cancel("web") == [d]
    rec = rig.finish(d, timeout=2)
    assert (rec.status, rec.message) == (CANCELED, "canceled by 'slipstream cancel'; the live release keeps serving")
    assert [c[:2] for c in rig.driver.calls if c[0] in ("start", "stop")] == [
        *(("start", i) for i in point.instances_started),
        *(("stop", i) for i in point.instances_started),
    ]
    assert (rig.live("web"), rig.proxy.ready("web"), rig.running()) == (first, ["d1-1"], ["web-d1-1"])
    assert [s.name for s in rig.proxy.servers("web")] == ["d1-1"]


def test_cancel_ends_queued_deploys_too(rigs: RigFactory) -> None:
    rig = rigs(overlap="wait")
    rig.builder.seconds = 60
    running = rig.deploy("web", TEXT)
    rig.wait_said(running, "-----> Building")
    queued = rig.deploy("web", TEXT)
    assert sorted(rig.engine.cancel("web")) == [running, queued]
    assert [rig.finish(d).status for d in (running, queued)] == [CANCELED, CANCELED]
    assert rig.record(queued).message == "canceled by 'slipstream cancel'"


def test_cancel_with_nothing_to_cancel(rig: Rig) -> None:
    rig.finish(rig.deploy("web", TEXT))
    assert rig.engine.cancel("web") == []
    with pytest.raises(NotFound, match="unknown service 'nope'"):
        rig.engine.cancel("nope")


def test_a_deploy_that_flipped_is_never_canceled(rig: Rig) -> None:
    text = render_yaml(web(maxShutdownDelaySeconds=30))
    first = rig.finish(rig.deploy("web", text)).id
    rig.proxy.sessions[("web", "d1-1")] = 1  # a request in flight holds deploy 2 in its drain
    second = rig.deploy("web", text)
    rig.wait_said(second, "Draining 1 old instance")
    assert rig.engine.cancel("web") == []  # sealed at the flip
    third = rig.deploy("web", text)  # the override policy cannot cancel it either: the new one waits
    assert (rig.record(second).finished_at, rig.status(third)) == (None, "queued")
    rig.proxy.sessions.clear()
    assert rig.finish(third).status == LIVE
    assert rig.record(second).message == "replaced by deploy 3"  # it went live: never canceled
    assert [rig.status(d) for d in (first, second, third)] == ["deactivated", "deactivated", LIVE]
    assert [c[2] for c in switches(rig)] == [("d1-1",), ("d2-1",), ("d3-1",)]
