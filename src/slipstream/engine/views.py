"""The read side: status and logs as the API shows them (no env values; secrets masked)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from typing import Any

from slipstream.engine.context import DeployContext
from slipstream.engine.release import hostname
from slipstream.errors import SlipstreamError
from slipstream.logs import Grep, Level, LogQuery, LogStore, Stream, parse_when
from slipstream.state.store import InstanceRecord
from slipstream.states import ACTIVE, ServiceType


def private_ports(ctx: DeployContext) -> dict[str, int]:
    """Stable loopback ports of the private services HAProxy listens for."""
    try:
        return ctx.proxy.private_ports()
    except SlipstreamError:
        return {}


def status(ctx: DeployContext) -> list[dict[str, Any]]:
    """Services with their project, live deploy, instances and URLs."""
    services = ctx.store.services()
    ports = private_ports(ctx) if any(s.type == ServiceType.PSERV for s in services) else {}
    by_service: dict[str, list[InstanceRecord]] = {}
    for rec in ctx.store.instances():  # one query, not one per service
        by_service.setdefault(rec.service, []).append(rec)
    out = []
    lives = ctx.store.deploys_by_id([s.live_deploy_id for s in services if s.live_deploy_id])
    actives = ctx.store.newest_deploys_in(sorted(ACTIVE), among=5)  # two queries, not two per service
    for svc in services:
        live = lives.get(svc.live_deploy_id) if svc.live_deploy_id else None
        active = actives.get(svc.name)
        instances = []
        for i in by_service.get(svc.name, []):
            row: dict[str, Any] = {"id": i.id, "deploy": i.deploy_id, "port": i.port, "pid": i.pid, "state": i.state}
            st = ctx.instances.status(i.id)
            if st is None:
                row.update(process="unknown")
            else:
                row.update(
                    pid=st.pid,
                    process=str(st.state),
                    restarts=st.restarts,
                    next_restart_in_s=st.next_restart_in_s,
                    last_event=st.last_event,
                )
            instances.append(row)
        hosts = svc.config.get("hosts") or [hostname(svc.name)]
        url = None
        if svc.type == ServiceType.WEB:
            url = f"http://{hosts[0]}:{ctx.settings.http_port}"
        elif svc.type == ServiceType.PSERV and svc.name in ports:
            url = f"tcp://127.0.0.1:{ports[svc.name]} (private)"
        out.append(
            {
                "name": svc.name,
                "project": svc.project,
                "type": svc.type,
                "runtime": svc.runtime,
                "url": url,
                "live_deploy": live.public() if live else None,
                "active_deploy": active.public() if active else None,
                "instances": instances,
            }
        )
    return out


def file_logs(ctx: DeployContext, service: str, req: LogRequest) -> dict[str, Any]:
    """Without a log store: the last lines of the service's instance files, unfiltered, masked."""
    ctx.store.service(service)
    live_ids = {i.id for i in ctx.store.instances(service)}
    lines: list[dict[str, Any]] = []
    for path in sorted(ctx.settings.instances_dir.glob(f"{service}-d*.log"), key=lambda p: p.stat().st_mtime):
        if path.stem not in live_ids:
            continue
        for text in path.read_text(errors="replace").splitlines()[-req.limit :]:
            lines.append({"service": service, "stream": "app", "instance": path.stem, "message": ctx.masker.mask(text)})
    return {"lines": lines[-req.limit :], "cursor": None}


PAGE = 10_000  # the most lines one store query answers; larger -n streams the search instead


@dataclass(frozen=True)
class LogRequest:
    """What 'slipstream logs' asks, as the API received it (text, parsed here)."""

    limit: int = 100
    since: str | None = None
    until: str | None = None
    grep: str | None = None
    level: str | None = None
    deploy: int | None = None
    instance: str | None = None
    build: bool = False
    after: int | None = None  # a cursor from an earlier answer: follow from there


def search_logs(ctx: DeployContext, store: LogStore, service: str, req: LogRequest) -> dict[str, Any]:
    """Lines of ``service`` from the log store, newest ``limit`` (or those after ``req.after``),
    oldest first, and the cursor to follow from. Bad filters raise InvalidInput naming the option."""
    ctx.store.service(service)
    now = time.time()
    streams = frozenset({Stream.BUILD}) if req.build else frozenset(s for s in Stream if s is not Stream.BUILD)
    query = LogQuery(
        service=service,
        since=parse_when(req.since, now, option="--since") if req.since else None,
        until=parse_when(req.until, now, option="--until") if req.until else None,
        grep=Grep.parse(req.grep) if req.grep else None,
        level=Level.parse(req.level) if req.level else None,
        deploy_id=req.deploy,
        instance=req.instance,
        streams=streams,
        limit=max(1, min(req.limit, PAGE)),
    )
    if req.after is not None:
        lines, cursor = store.follow(query, req.after)
    else:
        cursor = store.last_seq()  # before the search: a line stored meanwhile is followed, not lost
        query = replace(query, before=cursor + 1)
        if req.limit <= PAGE:
            lines = store.search(query)
        else:  # more than a page: stream the newest ones (the store never loads everything)
            lines = list(itertools.islice(store.iter_search(query, newest_first=True), req.limit))[::-1]
    return {"lines": [line.to_dict() for line in lines], "cursor": cursor}
