"""Tokens and scopes of the TCP API: the scope table covers every route, tokens are kept as digests
and checked in full, and the middleware answers 401/403 before a handler runs (in process)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest

from slipstream.api.app import create_app
from slipstream.api.auth import REVEALING, ROUTE_SCOPES, TokenAuth, path_scope, required_scope, route_of
from slipstream.api.tokens import TOUCH_EVERY_S, Scope, build_token, digest, issue, revoke, verify
from slipstream.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from slipstream.secrets import SecretBox
from slipstream.state import Store

from .conftest import Api
from .test_api import blueprint


def app_routes() -> set[tuple[str, str]]:
    """Every (method, path) the API serves (HEAD, which Starlette adds to GET, counts as GET)."""
    app = create_app(MagicMock(), lambda everything: None)
    return {(m, r.path) for r in app.routes for m in getattr(r, "methods", None) or () if m != "HEAD"}


def test_every_route_of_the_app_has_a_scope_and_the_table_names_no_other() -> None:
    routes = app_routes()
    assert routes - ROUTE_SCOPES.keys() == set(), "add these routes to api.auth.ROUTE_SCOPES"
    assert ROUTE_SCOPES.keys() - routes == set(), "these rows of ROUTE_SCOPES name no route"
    assert {path for _, path in routes} >= REVEALING


def test_read_scope_is_exactly_the_get_requests() -> None:
    """read may call every GET and nothing else; tokens are admin's, whatever the method."""
    for (method, path), scope in ROUTE_SCOPES.items():
        if path.startswith("/v1/tokens"):
            assert scope is Scope.ADMIN, path
        else:
            assert (scope is Scope.READ) == (method == "GET"), (method, path, scope)


@pytest.mark.parametrize(
    ("method", "route", "query", "needed"),
    [
        ("GET", "/v1/status", "", Scope.READ),
        ("HEAD", "/v1/status", "", Scope.READ),
        ("POST", "/v1/deploys", "", Scope.DEPLOY),
        ("POST", "/v1/services/{name}/env", "", Scope.ADMIN),
        ("GET", "/v1/databases/{name}/connection", "", Scope.READ),
        ("GET", "/v1/databases/{name}/connection", "reveal=false", Scope.READ),
        ("GET", "/v1/databases/{name}/connection", "reveal=true", Scope.ADMIN),
        ("GET", "/v1/keyvalues/{name}/connection", "reveal=1", Scope.ADMIN),
        ("GET", "/v1/keyvalues/{name}/connection", "reveal=false&reveal=True", Scope.ADMIN),
        ("GET", None, "", Scope.ADMIN),  # no route matched
        ("PUT", "/v1/status", "", Scope.ADMIN),  # not in the table
    ],
)
def test_required_scope(method: str, route: str | None, query: str, needed: Scope) -> None:
    assert required_scope(method, route, query) is needed


def test_scopes_include_the_ones_before_them() -> None:
    assert [s for s in Scope if s.covers(Scope.DEPLOY)] == [Scope.DEPLOY, Scope.ADMIN]
    assert Scope.READ.covers(Scope.READ) and not Scope.READ.covers(Scope.ADMIN)


def test_a_request_finds_its_route_template() -> None:
    app = create_app(MagicMock(), lambda everything: None)
    scope = {"type": "http", "method": "POST", "path": "/v1/services/web/rollback", "root_path": ""}
    assert route_of(app, scope) == "/v1/services/{name}/rollback"
    assert route_of(app, {**scope, "method": "DELETE"}) is None


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db", SecretBox(tmp_path / "master.key"))


def test_a_token_is_kept_as_its_sha256_only(store: Store, tmp_path: Path) -> None:
    made = issue(store, "ci", Scope.DEPLOY)
    assert made.text.startswith(f"slp_{made.record.id}_") and len(made.text) == 4 + 8 + 1 + 43
    assert made.record.digest == hashlib.sha256(made.text.encode()).hexdigest()
    assert "digest" not in made.record.public() and made.text not in str(made.record.public())
    raw = (tmp_path / "state.db").read_bytes() + (tmp_path / "state.db-wal").read_bytes()
    secret = made.text.split("_", 2)[2]
    assert secret.encode() not in raw
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT digest FROM api_tokens").fetchall() == [(digest(made.text),)]
    assert build_token()[1] != build_token()[1]


def test_verify_accepts_the_token_and_nothing_near_it(store: Store) -> None:
    made = issue(store, "ci", Scope.READ)
    assert verify(store, f"Bearer {made.text}").name == "ci"
    assert verify(store, f"bearer  {made.text}").name == "ci"
    wrong_secret = made.text[:-1] + ("A" if made.text[-1] != "A" else "B")
    other_id = "slp_00000000_" + made.text.split("_", 2)[2]
    for header in (None, "", made.text, f"Basic {made.text}", f"Bearer {wrong_secret}", f"Bearer {other_id}"):
        with pytest.raises(Unauthenticated):
            verify(store, header)
    revoke(store, "ci")
    with pytest.raises(Unauthenticated, match="wrong or was revoked"):
        verify(store, f"Bearer {made.text}")


def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    made = issue(store, "ci", Scope.READ)
    verify(store, f"Bearer {made.text}", now=1000.0)
    verify(store, f"Bearer {made.text}", now=1000.0 + TOUCH_EVERY_S / 2)
    assert store.tokens()[0].last_used_at == 1000.0
    verify(store, f"Bearer {made.text}", now=1000.0 + TOUCH_EVERY_S + 1)
    assert store.tokens()[0].last_used_at == 1000.0 + TOUCH_EVERY_S + 1


def test_token_names_are_checked_unique_and_revocable_by_name_or_id(store: Store) -> None:
    with pytest.raises(InvalidInput):
        issue(store, "bad name", Scope.READ)
    first = issue(store, "ci", Scope.READ)
    with pytest.raises(Conflict):
        issue(store, "ci", Scope.ADMIN)
    issue(store, "ops", Scope.ADMIN)
    assert revoke(store, first.record.id).name == "ci"
    assert [t.name for t in store.tokens()] == ["ops"]
    with pytest.raises(NotFound):
        revoke(store, "ci")
    messages = [e["message"] for e in store.events()]
    assert messages[0] == f"API token 'ci' ({first.record.id}, scope read) created"
    assert not any(first.text in m for m in messages)


class TcpApi:
    """The app as the TCP listener serves it (behind TokenAuth), in process."""

    def __init__(self, api: Api) -> None:
        self.store = api.rig.engine.store
        self.app = TokenAuth(api.app, self.store)

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="https://slipstream") as client:
                return await client.request(method, path, headers=headers, **kw)

        return asyncio.run(send())


def test_the_middleware_answers_401_and_403_before_any_handler(api: Api) -> None:
    tcp = TcpApi(api)
    read = issue(tcp.store, "reader", Scope.READ).text
    deploy = issue(tcp.store, "deployer", Scope.DEPLOY).text
    admin = issue(tcp.store, "root", Scope.ADMIN).text
    missing = tcp.request("GET", "/v1/status")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert set(missing.json()) == {"error", "hint"}
    assert tcp.request("GET", "/v1/status", read).status_code == 200
    denied = tcp.request("POST", "/v1/gc", read, json={})
    assert denied.status_code == 403 and "needs admin" in denied.json()["error"]
    assert tcp.request("POST", "/v1/services/nope/cancel", read).status_code == 403
    assert tcp.request("POST", "/v1/services/nope/cancel", deploy).status_code == 404  # reached the handler
    assert tcp.request("POST", "/v1/tokens", deploy, json={"name": "x", "scope": "admin"}).status_code == 403
    made = tcp.request("POST", "/v1/tokens", admin, json={"name": "x", "scope": "read"})
    assert made.status_code == 200 and made.json()["token"].startswith("slp_")
    listed = tcp.request("GET", "/v1/tokens", admin).json()
    assert [t["name"] for t in listed["tokens"]] == ["reader", "deployer", "root", "x"]
    assert not any(t in str(listed) for t in (read, deploy, admin, made.json()["token"]))
    assert tcp.request("GET", "/v1/no-such-route", admin).status_code == 404
    assert api.get("/v1/status").status_code == 200  # the unix socket's app: no token


def test_a_bad_scope_is_refused_in_the_shape_of_every_error(api: Api) -> None:
    resp = api.post("/v1/tokens", json={"name": "ci", "scope": "root"})
    assert resp.status_code == 422 and "scope" in resp.json()["error"]


@pytest.mark.parametrize(
    ("body", "needed"),
    [
        (b'{"service": "web"}', Scope.DEPLOY),
        (b'{"service": "web", "blueprint": "/srv/shop/render.yaml"}', Scope.DEPLOY),
        (b'{"service": "web", "blueprint": "/srv/shop/../shop/render.yaml"}', Scope.DEPLOY),
        (b'{"service": "web", "blueprint": "/etc/passwd"}', Scope.ADMIN),
        (b'{"service": "web", "from_dir": "/etc"}', Scope.ADMIN),
        (b'{"blueprint": "/srv/shop/render.yaml", "from_dir": "/srv/shop"}', Scope.ADMIN),
        (b"not json", Scope.DEPLOY),  # the app refuses it (422)
    ],
)
def test_path_scope(body: bytes, needed: Scope) -> None:
    assert path_scope(body, {"/srv/shop/render.yaml"}) is needed


def test_a_deploy_token_deploys_known_blueprints_only(api: Api) -> None:
    request = blueprint(api)
    assert api.post("/v1/deploys", json=request).status_code == 200  # the operator, on the socket
    api.rig.finish(1)
    tcp = TcpApi(api)
    deploy = issue(tcp.store, "ci", Scope.DEPLOY).text
    admin = issue(tcp.store, "root", Scope.ADMIN).text
    known = {**request, "from_dir": None}
    again = tcp.request("POST", "/v1/deploys", deploy, json=known)
    assert again.status_code != 403, again.text  # reached the engine (which wants a git checkout here)
    for other in ({**known, "from_dir": request["from_dir"]}, {**known, "blueprint": "/etc/passwd"}):
        refused = tcp.request("POST", "/v1/deploys", deploy, json=other)
        assert refused.status_code == 403 and "already deploys from" in refused.json()["error"], refused.text
    assert tcp.request("POST", "/v1/apply", deploy, json={"blueprint": "/etc/passwd"}).status_code == 403
    with_dir = tcp.request("POST", "/v1/deploys", admin, json={**known, "from_dir": request["from_dir"]})
    assert with_dir.status_code == 200 and with_dir.json()["deploy"]["id"] == 2  # admin: the body reached the app
