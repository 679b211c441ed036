"""Private services: a stable loopback listener in the proxy, the same gated flip as web services."""

from __future__ import annotations

from slipstream.states import DeployStatus

from .harness import Rig, render_yaml, service, web


def test_a_private_service_keeps_its_port_across_deploys(rig: Rig) -> None:
    text = render_yaml(
        service("pserv", "search"),
        web(envVars=[{"key": "SEARCH", "fromService": {"type": "pserv", "name": "search", "property": "hostport"}}]),
    )
    first = rig.finish(rig.deploy("search", text)).id
    second = rig.finish(rig.deploy("search", text)).id
    assert [rig.status(first), rig.status(second)] == [DeployStatus.DEACTIVATED, DeployStatus.LIVE]
    (route,) = rig.proxy.routes()
    assert (route.service, route.kind, route.port, [s.name for s in route.servers]) == (
        "search",
        "private",
        21000,
        ["d2-1"],
    )
    assert [c for c in rig.proxy.calls if c[0] == "set_private_route"] == [("set_private_route", "search", 21000)]
    assert rig.proxy.ready("search") == ["d2-1"]
    web_deploy = rig.finish(rig.deploy("web", text))
    assert web_deploy.status == DeployStatus.LIVE
    env = next(p.spec.env for p in rig.host.running() if p.spec.instance_id == "web-d3-1")
    assert env["SEARCH"] == "127.0.0.1:21000"
    (svc,) = [s for s in rig.engine.status() if s["name"] == "search"]
    assert svc["url"] == "tcp://127.0.0.1:21000 (private)"
