"""The live monitor's proxy watch: a killed HAProxy comes back with the live routes."""

from __future__ import annotations

import subprocess
import time

from tests.polling import wait_for

from .harness import Rig, render_yaml, web


def test_a_killed_proxy_is_started_again_with_the_live_routes(rig: Rig) -> None:
    rig.finish(rig.deploy("web", render_yaml(web(numInstances=2))))
    assert rig.engine.monitor.ensure_proxy() is False  # running: nothing to do
    rig.proxy.crash()
    assert rig.engine.monitor.ensure_proxy() is True
    assert rig.proxy.running() and rig.proxy.ready("web") == ["d1-1", "d1-2"]
    assert "HAProxy was not running; started again with the live routes" in [e["message"] for e in rig.store.events()]


def test_the_watch_waits_on_a_pidfd_and_restarts_at_the_exit(rig: Rig) -> None:
    """With a pid to watch, the loop sleeps on its pidfd (no look at the proxy twice a second) and
    starts the proxy again as soon as the process exits."""
    rig.finish(rig.deploy("web", render_yaml(web())))
    proc = subprocess.Popen(["sleep", "30"])  # stands in for the HAProxy process
    looks: list[float] = []

    def pid() -> int | None:
        looks.append(time.monotonic())
        return proc.pid if proc.poll() is None else None

    rig.proxy.pid = pid  # type: ignore[attr-defined]
    rig.proxy.running = lambda: pid() is not None  # type: ignore[method-assign]
    time.sleep(0.7)  # the engine's watch ends its 0.5 s wait of a proxy without a pid and takes the pidfd
    try:
        looks.clear()
        time.sleep(1.2)
        assert looks == []  # asleep on the pidfd; polling would have looked twice
        started = len([c for c in rig.proxy.calls if c[0] == "start"])
        rig.proxy.pid = lambda: None  # type: ignore[attr-defined]
        rig.proxy.running = lambda: False  # type: ignore[method-assign]
        killed = time.monotonic()
        proc.kill()
        proc.wait()
        wait_for(lambda: len([c for c in rig.proxy.calls if c[0] == "start"]) > started, timeout=10, what="restart")
        assert time.monotonic() - killed < 2.0  # at the exit, not at the 5 s net
    finally:
        proc.kill()
        proc.wait()
