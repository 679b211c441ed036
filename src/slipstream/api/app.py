"""The HTTP API (OpenAPI at /docs) the CLI and dashboard talk to; served on a 0600 unix socket, and
with bearer tokens on an optional TCP listener (``api.auth`` holds the scope of every route)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from slipstream.api.errors import handle_expected, handle_invalid_request, handle_unexpected
from slipstream.api.listener import Listener
from slipstream.api.tokens import Scope, issue, revoke
from slipstream.engine.dbs import DatabaseManager
from slipstream.engine.engine import Engine
from slipstream.engine.keyvalues import KeyValueManager
from slipstream.engine.observe import Observability
from slipstream.engine.views import LogRequest
from slipstream.errors import InvalidInput, SlipstreamError, Unavailable


class DeployRequest(BaseModel):
    service: str
    blueprint: str | None = None
    commit: str | None = None
    from_dir: str | None = None
    project: str | None = None


class ApplyRequest(BaseModel):
    blueprint: str
    project: str | None = None


class RollbackRequest(BaseModel):
    to: int | None = None
    with_pre_deploy: bool = False


class GcRequest(BaseModel):
    service: str | None = None
    dry_run: bool = False


class RestoreRequest(BaseModel):
    backup: str | None = None
    into: str | None = None
    to_time: str | None = None


class DrillRequest(BaseModel):
    backup: str | None = None


class EnvRequest(BaseModel):
    set: dict[str, str] = {}
    unset: list[str] = []


class ShutdownRequest(BaseModel):
    everything: bool = True


class TokenRequest(BaseModel):
    name: str
    scope: Scope


def create_app(engine: Engine, request_shutdown: Callable[[bool], None], listener: Listener | None = None) -> FastAPI:
    """Build the API around a started engine; ``request_shutdown(everything)`` ends the daemon;
    ``listener`` is the TCP listener, if the daemon has one (``GET /v1/api/listener`` shows it)."""
    app = FastAPI(title="slipstream", version="0.1.0")
    app.add_exception_handler(SlipstreamError, handle_expected)
    app.add_exception_handler(RequestValidationError, handle_invalid_request)
    app.add_exception_handler(Exception, handle_unexpected)

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "http_port": engine.settings.http_port}

    @app.get("/v1/status")
    def status() -> dict[str, Any]:
        return {"services": engine.status(), "http_port": engine.settings.http_port}

    @app.post("/v1/deploys")
    def deploy(req: DeployRequest) -> dict[str, Any]:
        deploy_id = engine.deploy(
            req.service,
            blueprint=Path(req.blueprint) if req.blueprint else None,
            commit=req.commit,
            from_dir=Path(req.from_dir) if req.from_dir else None,
            project=req.project,
        )
        return {"deploy": engine.store.deploy(deploy_id).public()}

    @app.post("/v1/apply")
    def apply(req: ApplyRequest) -> dict[str, Any]:
        result = engine.apply(Path(req.blueprint), req.project)
        result["deploys"] = [engine.store.deploy(i).public() for i in result["deploys"]]
        return result

    @app.get("/v1/plan-state")
    def plan_state(project: str | None = None, blueprint: str | None = None) -> dict[str, Any]:
        return engine.plan_state(project, Path(blueprint) if blueprint else None)

    @app.get("/v1/deploys/{deploy_id}")
    def get_deploy(deploy_id: int) -> dict[str, Any]:
        return {"deploy": engine.store.deploy(deploy_id).public()}

    @app.get("/v1/deploys/{deploy_id}/events")
    def deploy_events(deploy_id: int, after: int = 0) -> dict[str, Any]:
        engine.store.deploy(deploy_id)
        return {"events": engine.store.events(deploy_id=deploy_id, after=after)}

    @app.get("/v1/services/{name}/deploys")
    def deploys(name: str, limit: int = 20) -> dict[str, Any]:
        engine.store.service(name)
        return {"deploys": [d.public() for d in engine.store.deploys(name, limit=limit)]}

    @app.post("/v1/services/{name}/rollback")
    def rollback(name: str, req: RollbackRequest) -> dict[str, Any]:
        deploy_id = engine.rollback(name, to=req.to, with_pre_deploy=req.with_pre_deploy)
        return {"deploy": engine.store.deploy(deploy_id).public()}

    @app.post("/v1/services/{name}/cancel")
    def cancel(name: str) -> dict[str, Any]:
        canceled = engine.cancel(name)
        return {"canceled": [engine.store.deploy(i).public() for i in canceled]}

    @app.post("/v1/gc")
    def gc(req: GcRequest) -> dict[str, Any]:
        freed = engine.collect_builds(req.service, dry_run=req.dry_run)
        return {"dry_run": req.dry_run, "builds": [c.public() for c in freed]}

    @app.get("/v1/services/{name}/logs")
    def logs(
        name: str,
        n: int = 100,
        since: str | None = None,
        until: str | None = None,
        grep: str | None = None,
        level: str | None = None,
        deploy: int | None = None,
        instance: str | None = None,
        build: bool = False,
        after: int | None = None,
    ) -> dict[str, Any]:
        """A service's log lines (masked), newest ``n`` or those after cursor ``after``."""
        req = LogRequest(n, since, until, grep, level, deploy, instance, build, after)
        return engine.search_logs(name, req)

    @app.get("/v1/services/{name}/events")
    def service_events(name: str, after: int = 0) -> dict[str, Any]:
        engine.store.service(name)
        return {"events": engine.store.events(service=name, after=after)}

    @app.get("/v1/services/{name}/env")
    def env(name: str) -> dict[str, Any]:
        return {"env": engine.env(name)}

    @app.post("/v1/services/{name}/env")
    def set_env(name: str, req: EnvRequest) -> dict[str, Any]:
        deploy_id = engine.set_env(name, req.set, req.unset)
        return {"deploy": engine.store.deploy(deploy_id).public() if deploy_id else None}

    @app.get("/v1/services/{name}/runs")
    def runs(name: str) -> dict[str, Any]:
        return {"runs": engine.cron.runs(name)}

    @app.post("/v1/services/{name}/runs")
    def trigger_run(name: str) -> dict[str, Any]:
        return {"run": engine.cron.trigger(name, "manual")}

    def dbs() -> DatabaseManager:
        if engine.databases is None:
            raise Unavailable("managed PostgreSQL is not enabled in this daemon")
        return engine.databases

    def backup_json(b: Any) -> dict[str, Any]:
        return {
            "id": b.id,
            "database": b.database,
            "kind": b.kind,
            "created_at": b.created_at,
            "size_bytes": b.size_bytes,
            "status": b.status,
            "error": b.error,
        }

    @app.get("/v1/databases")
    def databases() -> dict[str, Any]:
        return {"databases": dbs().overview()}

    @app.get("/v1/databases/{name}/connection")
    def connection(name: str, reveal: bool = False) -> dict[str, Any]:
        """The connection string: masked, unless the caller (the socket's owner) asks to reveal it."""
        info = dbs().info(name)
        url = info.connection_string()
        ca = dbs().cluster.ca_file
        return {
            "url": url if reveal else url.replace(info.password, "********"),
            "ca_file": str(ca) if ca else None,
            "psql": {
                "argv": ["psql", "-h", info.host, "-p", str(info.port), "-U", info.user, info.database],
                "password": info.password if reveal else None,
            },
        }

    @app.post("/v1/databases/{name}/backups")
    def backup(name: str) -> dict[str, Any]:
        return {"backup": backup_json(dbs().backup(name))}

    @app.get("/v1/databases/{name}/backups")
    def backups(name: str) -> dict[str, Any]:
        return {"backups": [backup_json(b) for b in dbs().backups(name)]}

    @app.post("/v1/databases/{name}/restore")
    def restore(name: str, req: RestoreRequest) -> dict[str, Any]:
        if req.to_time is not None:
            if req.backup is not None or not req.into:
                raise InvalidInput(
                    "a point-in-time restore takes a time and --into NEW, not a backup id",
                    f"slipstream db restore {name} --to-time 2026-11-23T19:50:00Z --into {name}_recovered",
                )
            info = dbs().restore_to_time(name, req.to_time, into=req.into)
        elif req.backup is None:
            raise InvalidInput("restore needs a backup id or --to-time", f"run 'slipstream db backups {name}'")
        else:
            info = dbs().restore(name, req.backup, into=req.into)
        return {"database": info.database}

    @app.post("/v1/postgres/base-backups")
    def base_backup() -> dict[str, Any]:
        b = dbs().base_backup()
        return {"base_backup": {"id": b.id, "finished_at": b.finished_at, "size_bytes": b.size_bytes}}

    @app.get("/v1/postgres/base-backups")
    def base_backups() -> dict[str, Any]:
        return dbs().recovery_window()

    @app.post("/v1/databases/{name}/drill")
    def drill(name: str, req: DrillRequest) -> dict[str, Any]:
        r = dbs().drill(name, req.backup)
        return {"ok": r.ok, "message": r.message, "tables": {k: list(v) for k, v in r.tables.items()}}

    def kvs() -> KeyValueManager:
        if engine.keyvalues is None:
            raise Unavailable("key value instances are not enabled in this daemon")
        return engine.keyvalues

    @app.get("/v1/keyvalues")
    def keyvalues() -> dict[str, Any]:
        return {"keyvalues": kvs().overview()}

    @app.get("/v1/keyvalues/{name}/connection")
    def keyvalue_connection(name: str, reveal: bool = False) -> dict[str, Any]:
        """How to reach a key value: the URL masked, unless the caller (the socket's owner) asks."""
        conn = kvs().connection(name)
        if not reveal:
            conn["url"] = conn["url"].replace(conn["password"], "********")
            conn["password"] = None
        return conn

    @app.delete("/v1/services/{name}")
    def delete_service(name: str, purge_disks: bool = False) -> dict[str, Any]:
        return engine.removal.service(name, purge_disks=purge_disks)

    @app.delete("/v1/databases/{name}")
    def delete_database(name: str) -> dict[str, Any]:
        return engine.removal.database(name)

    @app.delete("/v1/keyvalues/{name}")
    def delete_keyvalue(name: str, purge: bool = False) -> dict[str, Any]:
        return engine.removal.keyvalue(name, purge=purge)

    @app.get("/v1/projects")
    def projects() -> dict[str, Any]:
        return {"projects": engine.projects()}

    @app.delete("/v1/projects/{name}")
    def delete_project(name: str, purge_disks: bool = False) -> dict[str, Any]:
        return engine.removal.project(name, purge_disks=purge_disks)

    def observed() -> Observability:
        if engine.observability is None:
            raise Unavailable("metrics are not collected by this daemon")
        return engine.observability

    @app.get("/v1/services/{name}/metrics")
    def metrics(name: str, since: str = "1h") -> dict[str, Any]:
        """A service's (or database's, key value's) figures over ``since``, with sparklines."""
        return observed().report(name, since)

    @app.get("/v1/alerts")
    def alerts() -> dict[str, Any]:
        return {"alerts": observed().alerts()}

    @app.get("/metrics")
    def prometheus() -> Response:
        body, content_type = observed().prometheus()
        return Response(body, media_type=content_type)

    @app.get("/v1/tokens")
    def tokens() -> dict[str, Any]:
        """The API tokens (names, scopes, use; never the token) and the listener they are for."""
        return {
            "tokens": [t.public() for t in engine.store.tokens()],
            "listener": listener.describe() if listener else None,
        }

    @app.post("/v1/tokens")
    def create_token(req: TokenRequest) -> dict[str, Any]:
        """A new token: the only answer that ever holds its text."""
        made = issue(engine.store, req.name, req.scope)
        return {"token": made.text, **made.record.public()}

    @app.delete("/v1/tokens/{name}")
    def revoke_token(name: str) -> dict[str, Any]:
        return {"revoked": revoke(engine.store, name).public()}

    @app.get("/v1/api/listener")
    def api_listener() -> dict[str, Any]:
        """The TCP listener's URL and the CA certificate a remote CLI trusts (public data)."""
        if listener is None:
            raise Unavailable("this daemon has no TCP listener", "set SLIPSTREAM_API_LISTEN=host:port and restart it")
        return listener.describe()

    @app.post("/v1/shutdown")
    def shutdown(req: ShutdownRequest) -> dict[str, Any]:
        request_shutdown(req.everything)
        return {"ok": True}

    return app
