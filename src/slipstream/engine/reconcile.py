"""Start-up reconciliation: make the machine match the state a previous daemon left.

1. Every known secret value goes back into the masker before anything is logged.
2. HAProxy is started or adopted with the live routes (it kept serving while the daemon was down).
3. Live instances are adopted (pid + start time) or started again; any other instance record (a
   deploy cut short) is stopped and dropped.
4. Deploys the previous daemon left unfinished end cleanly: queued ones are queued again, one that
   had already gone live is closed, any other fails ("interrupted by a daemon restart"); the live
   release was never touched.
5. Proxy servers that belong to no live instance are removed; live ones are set ready.
"""

from __future__ import annotations

from collections.abc import Callable

from slipstream.engine.context import DeployContext
from slipstream.engine.names import server_of
from slipstream.engine.release import hostname
from slipstream.errors import NotFound, SlipstreamError
from slipstream.proxy.model import Route, ServerState
from slipstream.states import DeployStatus, InstancePhase, ServiceType


def live_routes(ctx: DeployContext) -> list[Route]:
    """The routes HAProxy must have: every routed service's live instances, ready."""
    private: dict[str, int] = {}
    if any(s.type == ServiceType.PSERV for s in ctx.store.services()):
        try:  # a running HAProxy knows them; a stopped one gets them from its own record at start
            private = ctx.proxy.private_ports()
        except SlipstreamError:
            private = {}
    routes = []
    for svc in ctx.store.services():
        if svc.live_deploy_id is None or svc.type not in (ServiceType.WEB, ServiceType.PSERV):
            continue
        servers = tuple(
            ServerState(server_of(i), i.port or 0, "ready", 0)
            for i in ctx.store.instances(svc.name)
            if i.state == InstancePhase.LIVE
        )
        if svc.type == ServiceType.PSERV:
            routes.append(Route(svc.name, (), servers, kind="private", port=private.get(svc.name)))
        else:
            routes.append(Route(svc.name, tuple(svc.config.get("hosts") or (hostname(svc.name),)), servers))
    return routes


def reconcile(ctx: DeployContext, requeue: Callable[[str, int], None]) -> None:
    """Steps 1 to 5 of the module docstring."""
    for svc in ctx.store.services():
        env = ctx.store.service_env(svc.name)
        secret = set(svc.config.get("secret_keys", ()))
        ctx.masker.add(v for k, v in env.items() if k in secret or len(v) >= 8)
    ctx.proxy.start(live_routes(ctx))
    for inst in ctx.store.instances():
        ctx.instances.recover(inst)
    queued = []
    for d in ctx.store.unfinished_deploys():
        if d.status == DeployStatus.QUEUED:
            queued.append(d)
        elif d.status == DeployStatus.LIVE:
            ctx.store.transition(d.id, DeployStatus.LIVE, finished=True)
        else:
            ctx.store.transition(
                d.id,
                DeployStatus.UPDATE_FAILED,
                finished=True,
                message=f"interrupted by a daemon restart during {d.status}; the live release kept serving",
            )
    prune_proxy(ctx)
    for d in queued:  # after the pruning, which would take the servers a requeued deploy adds
        requeue(d.service, d.id)


def prune_proxy(ctx: DeployContext) -> None:
    """Remove proxy servers that belong to no live instance (left by an interrupted deploy)."""
    for route in ctx.proxy.routes():
        wanted = {server_of(i) for i in ctx.store.instances(route.service) if i.state == InstancePhase.LIVE}
        for s in route.servers:
            try:
                if s.name not in wanted:
                    ctx.proxy.remove_server(route.service, s.name)
                elif s.admin != "ready":
                    ctx.proxy.set_state(route.service, s.name, "ready")
            except NotFound:
                continue
