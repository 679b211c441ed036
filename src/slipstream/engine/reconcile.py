"""Start-up reconciliation: make the machine match the state a previous daemon left.

1. Every known secret value goes back into the masker before anything is logged.
2. HAProxy is started or adopted with the live routes (it kept serving while the daemon was down).
3. Live instances are adopted (pid + start time) or started again.
4. Proxy servers that belong to no live instance are removed; live ones are set ready: a daemon
   killed after the flip left traffic on the new instances and the old ones draining.
5. Only then is any other instance record (a deploy cut short) stopped and dropped, and a build,
   pre-deploy or cron command the previous daemon left running (no one waits for it) killed.
6. Deploys the previous daemon left unfinished end cleanly: queued ones are queued again, one that
   had already gone live is closed, any other fails ("interrupted by a daemon restart"); traffic is
   on the live release.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from slipstream.engine.context import DeployContext
from slipstream.engine.names import server_of
from slipstream.engine.release import hostname
from slipstream.errors import NotFound, SlipstreamError
from slipstream.proxy.model import Route, ServerState
from slipstream.runtime.cgroups import OneOffCgroups
from slipstream.runtime.oneoff import end_leftovers
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
    """Steps 1 to 6 of the module docstring."""
    for svc in ctx.store.services():
        env = ctx.store.service_env(svc.name)
        secret = set(svc.config.get("secret_keys", ()))
        ctx.masker.add(v for k, v in env.items() if k in secret or len(v) >= 8)
    ctx.proxy.start(live_routes(ctx))
    records = ctx.store.instances()
    for inst in records:
        if inst.state == InstancePhase.LIVE:
            ctx.instances.recover(inst)
    prune_proxy(ctx)  # traffic back on the live instances before any other stops (a kill after the flip)
    for inst in records:
        if inst.state != InstancePhase.LIVE:
            ctx.instances.recover(inst)
    end_leftover_commands(ctx)
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
    for d in queued:  # after the pruning, which would take the servers a requeued deploy adds
        requeue(d.service, d.id)


def end_leftover_commands(ctx: DeployContext) -> None:
    """Kill one-off commands the previous daemon started and can no longer wait for (step 5)."""
    keep = set()
    for inst in ctx.store.instances():
        st = ctx.instances.status(inst.id)
        for pid in (inst.pid, st.pid if st else None):
            try:
                if pid:
                    keep.add(os.getsid(pid))
            except OSError:  # not running
                continue
    for line in end_leftovers(ctx.settings.builds_dir, keep):
        ctx.store.event("instance", ctx.masker.mask(f"ended {line}: left running by the previous daemon"))
    oneoff = getattr(getattr(ctx.driver, "local", ctx.driver), "oneoff_cgroups", None)
    killed = oneoff.end_stale() if isinstance(oneoff, OneOffCgroups) else 0
    if killed:  # what left its process group, or its directory, in a one-off's cgroups
        ctx.store.event("instance", f"ended {killed} process(es) a one-off command left running in its cgroups")


def prune_proxy(ctx: DeployContext) -> None:
    """Set every live instance's server ready, then remove the servers of no live instance (left by
    an interrupted deploy): in this order a route never has no ready server in between."""
    for route in ctx.proxy.routes():
        wanted = {server_of(i) for i in ctx.store.instances(route.service) if i.state == InstancePhase.LIVE}
        ready = [s for s in route.servers if s.name in wanted and s.admin != "ready"]
        gone = [s for s in route.servers if s.name not in wanted]
        for s in ready + gone:
            try:
                if s in ready:
                    ctx.proxy.set_state(route.service, s.name, "ready")
                else:
                    ctx.proxy.remove_server(route.service, s.name)
            except NotFound:
                continue
