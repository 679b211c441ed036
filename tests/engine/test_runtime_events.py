"""Runtime events and the live monitor keep routing honest after the flip."""

from __future__ import annotations

import time

import pytest

from tests.polling import wait_for

from .conftest import RigFactory
from .harness import FAIL, PASS, Rig, render_yaml, web, worker


def said(rig: Rig, service: str) -> list[str]:
    return [e["message"] for e in rig.store.events(service=service) if e["kind"] in ("instance", "health")]


def test_a_crashed_live_instance_leaves_rotation_until_its_check_passes(rig: Rig) -> None:
    rig.finish(rig.deploy("web", render_yaml(web(numInstances=2))))
    rig.proxy.calls.clear()
    rig.driver.crash("web-d1-1")
    assert rig.proxy.ready("web") == ["d1-2"]  # at once: the event arrives with the exit
    rig.probes.answers["web-d1-1"] = FAIL  # restarted, but not answering yet
    pid = rig.driver.restart("web-d1-1").pid
    time.sleep(0.15)  # the readmission probes every 0.1 s
    assert rig.proxy.ready("web") == ["d1-2"]
    rig.probes.answers["web-d1-1"] = PASS
    wait_for(lambda: "web-d1-1 is healthy again and back in rotation" in said(rig, "web"), what="the readmission")
    assert rig.proxy.ready("web") == ["d1-1", "d1-2"]
    assert rig.proxy.calls == [("set_state", "web", "d1-1", "maint"), ("set_state", "web", "d1-1", "ready")]
    assert [i.pid for i in rig.store.instances("web") if i.id == "web-d1-1"] == [pid]  # adoptable after a restart
    assert said(rig, "web")[-3:] == [
        "web-d1-1: exited with code 1; restarting now",
        f"web-d1-1: restarted after a crash (restart 1, pid {pid})",
        "web-d1-1 is healthy again and back in rotation",
    ]


def test_a_crashed_worker_touches_no_route(rig: Rig) -> None:
    rig.finish(rig.deploy("jobs", render_yaml(worker())))
    rig.driver.crash("jobs-d1-1")
    pid = rig.driver.restart("jobs-d1-1").pid
    assert rig.proxy.calls == [("start", ())]
    assert [i.pid for i in rig.store.instances("jobs")] == [pid]


@pytest.mark.parametrize(
    ("timings", "calls"),
    [
        ({"unroute_after_s": 0, "restart_after_s": 3600}, [("set_state", "web", "d1-1", "maint")]),
        (
            {"unroute_after_s": 3600, "restart_after_s": 0},  # out of rotation first, then restarted
            [("set_state", "web", "d1-1", "maint"), ("stop", "web-d1-1", 1.0), ("start", "web-d1-1")],
        ),
    ],
    ids=["out of rotation", "restarted"],
)
def test_the_live_monitor_acts_on_a_failing_check(
    rigs: RigFactory, timings: dict[str, float], calls: list[tuple[object, ...]]
) -> None:
    rig = rigs(**timings)
    rig.finish(rig.deploy("web", render_yaml(web())))
    rig.proxy.calls.clear()
    rig.driver.calls.clear()
    rig.probes.answers["web-d1-1"] = FAIL
    rig.engine.monitor.check_all()
    assert [*rig.proxy.calls, *rig.driver.calls] == calls
    rig.probes.answers["web-d1-1"] = PASS
    rig.engine.monitor.check_all()
    wait_for(lambda: rig.proxy.ready("web") == ["d1-1"], what="d1-1 ready again")
