"""The read side: status and logs as the API shows them (no env values; secrets masked)."""

from __future__ import annotations

from typing import Any

from slipstream.engine.context import DeployContext
from slipstream.engine.release import hostname
from slipstream.errors import SlipstreamError
from slipstream.states import ACTIVE, ServiceType


def private_ports(ctx: DeployContext) -> dict[str, int]:
    """Stable loopback ports of the private services HAProxy listens for."""
    try:
        return {r.service: r.port for r in ctx.proxy.routes() if r.kind == "private" and r.port}
    except SlipstreamError:
        return {}


def status(ctx: DeployContext) -> list[dict[str, Any]]:
    """Services with their project, live deploy, instances and URLs."""
    services = ctx.store.services()
    ports = private_ports(ctx) if any(s.type == ServiceType.PSERV for s in services) else {}
    out = []
    for svc in services:
        live = ctx.store.deploy(svc.live_deploy_id) if svc.live_deploy_id else None
        active = next((d for d in ctx.store.deploys(svc.name, limit=5) if d.status in ACTIVE), None)
        instances = []
        for i in ctx.store.instances(svc.name):
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


def logs(ctx: DeployContext, service: str, n: int = 100, cursor: dict[str, int] | None = None) -> dict[str, Any]:
    """Last ``n`` lines of the service's live instances (or new lines since ``cursor``), masked."""
    ctx.store.service(service)
    files = sorted(ctx.settings.instances_dir.glob(f"{service}-d*.log"), key=lambda p: p.stat().st_mtime)
    live_ids = {i.id for i in ctx.store.instances(service)}
    lines: list[str] = []
    new_cursor: dict[str, int] = {}
    for f in files:
        iid = f.stem
        if cursor is None and iid not in live_ids and f is not files[-1]:
            continue
        start = (cursor or {}).get(iid, 0) if cursor is not None else 0
        try:
            with open(f, "rb") as fh:
                fh.seek(start)
                data = fh.read()
                new_cursor[iid] = start + len(data)
        except OSError:
            continue
        lines.extend(f"[{iid}] {line}" for line in data.decode(errors="replace").splitlines())
    if cursor is None:
        lines = lines[-n:]
    return {"lines": [ctx.masker.mask(line) for line in lines], "cursor": new_cursor}
