"""The live monitor's proxy watch: a killed HAProxy comes back with the live routes."""

from __future__ import annotations

from .harness import Rig, render_yaml, web


def test_a_killed_proxy_is_started_again_with_the_live_routes(rig: Rig) -> None:
    rig.finish(rig.deploy("web", render_yaml(web(numInstances=2))))
    assert rig.engine.monitor.ensure_proxy() is False  # running: nothing to do
    rig.proxy.crash()
    assert rig.engine.monitor.ensure_proxy() is True
    assert rig.proxy.running() and rig.proxy.ready("web") == ["d1-1", "d1-2"]
    assert "HAProxy was not running; started again with the live routes" in [e["message"] for e in rig.store.events()]
