"""After a daemon restart: live instances adopted, interrupted deploys ended, queued ones run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from slipstream.proxy.fake import FakeProxy
from slipstream.proxy.model import Route
from slipstream.states import DeployStatus

from .conftest import RigFactory
from .harness import FAIL, PASS, Rig, render_yaml, web

TEXT = render_yaml(web(memoryLimitMB=256, plan="free", numInstances=2))


def pids(rig: Rig) -> dict[str, int]:
    return {p.spec.instance_id: p.pid for p in rig.host.running()}


def test_a_restarted_daemon_adopts_live_instances_without_restarting_them(rigs: RigFactory) -> None:
    old = rigs()
    d = old.finish(old.deploy("web", TEXT)).id
    before = pids(old)
    old.kill()
    rig = rigs(host=old.host, proxy=old.proxy)
    assert rig.driver.calls == [("adopt", "web-d1-1", before["web-d1-1"]), ("adopt", "web-d1-2", before["web-d1-2"])]
    assert pids(rig) == before
    assert rig.proxy.calls[-1] == ("start", ("web",))  # the live route, as it was; nothing else changed
    assert (rig.live("web"), rig.proxy.ready("web")) == (d, ["d1-1", "d1-2"])
    assert rig.instances("web") == [("web-d1-1", "live"), ("web-d1-2", "live")]


def vanish(rig: Rig) -> None:
    rig.host.vanish(pids(rig)["web-d1-1"])


@pytest.mark.parametrize("before_restart", [lambda rig: None, vanish], ids=["adopted", "gone while down"])
def test_the_memory_cap_and_cpu_share_survive_a_daemon_restart(
    rigs: RigFactory, before_restart: Callable[[Rig], None]
) -> None:
    old = rigs()
    old.finish(old.deploy("web", TEXT))
    old.kill()
    before_restart(old)
    rig = rigs(host=old.host, proxy=old.proxy)
    for iid in ("web-d1-1", "web-d1-2"):  # a crash restarts an instance with the spec the new driver holds
        rig.driver.crash(iid)
        rig.driver.restart(iid)
    caps = {p.spec.instance_id: (p.spec.memory_limit_mb, p.spec.cpus) for p in rig.host.running()}
    assert caps == {"web-d1-1": (256, 0.1), "web-d1-2": (256, 0.1)}  # memoryLimitMB over the plan; the plan's CPU


def test_an_instance_gone_while_the_daemon_was_down_is_started_again(rigs: RigFactory) -> None:
    old = rigs()
    old.finish(old.deploy("web", TEXT))
    old.kill()
    vanish(old)
    rig = rigs(host=old.host, proxy=old.proxy)
    assert [c[:2] for c in rig.driver.calls] == [("adopt", "web-d1-1"), ("start", "web-d1-1"), ("adopt", "web-d1-2")]
    said = [e["message"] for e in rig.store.events(service="web")]
    assert "web-d1-1 was not running after a daemon restart; started again" in said
    assert rig.instances("web") == [("web-d1-1", "live"), ("web-d1-2", "live")]


def interrupted(rigs: RigFactory, proxy: FakeProxy | None = None) -> Rig:
    """A daemon killed while deploy 2 waited in its health gate and deploy 3 was queued."""
    old = rigs(overlap="wait", proxy=proxy)
    old.finish(old.deploy("web", render_yaml(web())))
    old.probes.answers["web-d2-1"] = FAIL
    old.retime(health_deadline_s=60)
    old.wait_said(old.deploy("web", render_yaml(web())), "Waiting for health check")
    old.deploy("web", render_yaml(web()))
    old.kill()
    return old


def test_interrupted_deploys_end_and_queued_ones_run(rigs: RigFactory) -> None:
    old = interrupted(rigs)
    assert [old.status(d) for d in (1, 2, 3)] == ["live", "health_check", "queued"]
    rig = rigs(host=old.host, proxy=old.proxy, start=False)
    rig.builder.seconds = 0.1  # deploy 3 builds after the start-up reconciliation is over
    rig.engine.start()
    interrupted_rec = rig.record(2)
    assert (interrupted_rec.status, interrupted_rec.message, interrupted_rec.finished_at is not None) == (
        DeployStatus.UPDATE_FAILED,
        "interrupted by a daemon restart during health_check; the live release kept serving",
        True,
    )
    assert ("remove_server", "web", "d2-1") in rig.proxy.calls
    assert rig.finish(3).status == DeployStatus.LIVE
    assert [rig.status(d) for d in (1, 2, 3)] == ["deactivated", "update_failed", "live"]
    assert rig.running() == ["web-d3-1"] and rig.instances("web") == [("web-d3-1", "live")]
    assert [s.name for s in rig.proxy.servers("web")] == ["d3-1"]


class SlowProxy(FakeProxy):
    """A FakeProxy whose next ``routes()`` after ``watch`` is set (the start-up pruning's read)
    gives a requeued deploy up to 1 s to add its server first, and records whether it did: a
    deploy queued again before the pruning would, and would then lose that server to it."""

    watch: Callable[[], bool] | None = None
    added_before_pruning: bool | None = None

    def routes(self) -> list[Route]:
        watch, self.watch = self.watch, None
        if watch is not None:
            deadline = time.monotonic() + 1.0
            while not watch() and time.monotonic() < deadline:
                time.sleep(0.01)
            self.added_before_pruning = watch()
        return super().routes()


def test_a_requeued_deploy_is_not_pruned_by_the_start_up_reconciliation(rigs: RigFactory) -> None:
    proxy = SlowProxy()
    old = interrupted(rigs, proxy)
    rig = rigs(host=old.host, proxy=proxy, start=False)
    rig.probes.answers["web-d3-1"] = FAIL  # deploy 3 waits in its gate
    proxy.watch = lambda: "d3-1" in {s.name for s in proxy.servers("web")}
    rig.engine.start()
    assert proxy.added_before_pruning is False  # queued again only after the pruning
    rig.probes.answers["web-d3-1"] = PASS
    rec = rig.finish(3)
    assert (rec.status, rec.message) == (DeployStatus.LIVE, None)


@pytest.mark.parametrize("setting, expected", [("plan", float(min(8, os.cpu_count() or 1))), ("off", None)])
def test_the_cpu_share_is_capped_at_the_machine_or_off(rigs: RigFactory, setting: str, expected: float | None) -> None:
    rig = rigs(cpu_limits=setting)
    rig.finish(rig.deploy("web", render_yaml(web(plan="pro ultra"))))  # 8 cores on Render
    assert [p.spec.cpus for p in rig.host.running()] == [expected]
