"""Who may call what over the API's TCP listener: one table from route to scope, and the middleware
that enforces it. The unix socket (0600, root's) serves the app without this layer.

Every request on TCP: (1) its bearer token is looked up (401 when missing, wrong or revoked);
(2) its route is found in the app and its scope in :data:`ROUTE_SCOPES` (a route missing from the
table needs admin, and a test keeps the table complete); (3) a token whose scope does not cover it
gets 403; (4) below admin, a deploy or apply is read first and may name only blueprints the daemon
already deploys from, and no directory (:func:`path_scope`); (5) the request goes on to the app.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from slipstream.api.errors import error_response
from slipstream.api.tokens import Scope, verify
from slipstream.errors import Forbidden, InvalidInput, SlipstreamError
from slipstream.state.store import Store

R, D, A = Scope.READ, Scope.DEPLOY, Scope.ADMIN

# (method, route path) -> the least scope that may call it. HEAD counts as GET.
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("GET", "/openapi.json"): R,
    ("GET", "/docs"): R,
    ("GET", "/docs/oauth2-redirect"): R,
    ("GET", "/redoc"): R,
    ("GET", "/v1/health"): R,
    ("GET", "/v1/status"): R,
    ("GET", "/v1/plan-state"): R,
    ("GET", "/v1/deploys/{deploy_id}"): R,
    ("GET", "/v1/deploys/{deploy_id}/events"): R,
    ("GET", "/v1/services/{name}/deploys"): R,
    ("GET", "/v1/services/{name}/logs"): R,
    ("GET", "/v1/services/{name}/events"): R,
    ("GET", "/v1/services/{name}/env"): R,  # values masked
    ("GET", "/v1/services/{name}/runs"): R,
    ("GET", "/v1/services/{name}/metrics"): R,
    ("GET", "/v1/databases"): R,
    ("GET", "/v1/databases/{name}/connection"): R,  # masked; ?reveal=true needs admin (REVEALING)
    ("GET", "/v1/databases/{name}/backups"): R,
    ("GET", "/v1/postgres/base-backups"): R,
    ("GET", "/v1/keyvalues"): R,
    ("GET", "/v1/keyvalues/{name}/connection"): R,  # likewise
    ("GET", "/v1/projects"): R,
    ("GET", "/v1/alerts"): R,
    ("GET", "/metrics"): R,
    ("GET", "/v1/api/listener"): R,
    ("POST", "/v1/deploys"): D,
    ("POST", "/v1/apply"): D,
    ("POST", "/v1/services/{name}/rollback"): D,
    ("POST", "/v1/services/{name}/cancel"): D,
    ("POST", "/v1/services/{name}/runs"): D,
    ("POST", "/v1/databases/{name}/backups"): D,  # a snapshot before a migration changes nothing
    ("POST", "/v1/services/{name}/env"): A,
    ("POST", "/v1/gc"): A,  # removes rollback targets
    ("POST", "/v1/databases/{name}/restore"): A,
    ("POST", "/v1/databases/{name}/drill"): A,
    ("POST", "/v1/postgres/base-backups"): A,
    ("DELETE", "/v1/services/{name}"): A,
    ("DELETE", "/v1/databases/{name}"): A,
    ("DELETE", "/v1/keyvalues/{name}"): A,
    ("DELETE", "/v1/projects/{name}"): A,
    ("POST", "/v1/shutdown"): A,
    ("GET", "/v1/tokens"): A,
    ("POST", "/v1/tokens"): A,
    ("DELETE", "/v1/tokens/{name}"): A,
}

# Routes that show a secret when asked with ?reveal=...: asking needs admin.
REVEALING: frozenset[str] = frozenset({"/v1/databases/{name}/connection", "/v1/keyvalues/{name}/connection"})
_FALSE = {"", "0", "false", "no", "off"}


# Routes whose body names paths on the daemon's machine (see path_scope).
PATH_ROUTES: frozenset[tuple[str, str]] = frozenset({("POST", "/v1/deploys"), ("POST", "/v1/apply")})
MAX_BODY = 1 << 20


def path_scope(body: bytes, known_blueprints: set[str]) -> Scope:
    """The scope a deploy or apply needs for the paths it names: deploy for the blueprints the daemon
    already deploys from; admin for any other file or a directory to deploy (a static site deployed
    from ``/etc`` would publish it), so a deploy token cannot read the machine's files."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return D  # the app answers 422
    if not isinstance(data, dict):
        return D
    if data.get("from_dir"):
        return A
    blueprint = data.get("blueprint")
    if blueprint and os.path.realpath(str(blueprint)) not in known_blueprints:
        return A
    return D


def required_scope(method: str, route: str | None, query: str = "") -> Scope:
    """The scope a request needs: the table's, admin for a route the table lacks (or no route)."""
    method = "GET" if method == "HEAD" else method
    needed = ROUTE_SCOPES.get((method, route or ""), A)
    if route in REVEALING:
        asked = parse_qs(query, keep_blank_values=True).get("reveal", [])
        if any(value.strip().lower() not in _FALSE for value in asked):
            needed = A
    return needed


def route_of(app: Any, scope: AsgiScope) -> str | None:
    """The path template of the app's route that fully matches the request (method included)."""
    for route in app.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(route.path)
    return None


class TokenAuth:
    """ASGI middleware: the TCP listener's app, answering 401/403 before the request reaches ``app``."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websockets here; lifespan is off
            return
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        try:
            record = await anyio.to_thread.run_sync(verify, self.store, raw.decode("latin-1") if raw else None)
            route = route_of(self.app, scope)
            needed = required_scope(scope["method"], route, scope.get("query_string", b"").decode("latin-1"))
            if not Scope(record.scope).covers(needed):
                raise Forbidden(
                    f"token {record.name!r} has scope {record.scope}; {scope['method']} {scope['path']} needs {needed}",
                    f"use a token with scope {needed} ('slipstream tokens create NAME --scope {needed}')",
                )
            if (scope["method"], route) in PATH_ROUTES and record.scope != A:
                body = await _read_body(receive)
                receive = _replay(body, receive)
                if path_scope(body, await anyio.to_thread.run_sync(self._known_blueprints)) is A:
                    raise Forbidden(
                        f"token {record.name!r} has scope {record.scope}: it may deploy only from the blueprints "
                        "this daemon already deploys from, without --from-dir",
                        "deploy by service name (and --commit), or use an admin token for a new path",
                    )
        except SlipstreamError as exc:
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _known_blueprints(self) -> set[str]:
        return {os.path.realpath(s.blueprint) for s in self.store.services() if s.blueprint}


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (at most MAX_BODY; a deploy request is a few hundred bytes)."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY:
            raise InvalidInput(f"request body over {MAX_BODY} bytes")
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, server_receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the server's next messages."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await server_receive()

    return receive
