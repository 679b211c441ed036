"""The remote API, end to end: a real daemon with SLIPSTREAM_API_LISTEN on a free loopback port
serves TLS with its own CA; tokens made with the CLI over the socket are required, checked and
scoped on TCP; the CLI with SLIPSTREAM_API_URL/SLIPSTREAM_TOKEN/SLIPSTREAM_API_CA runs against it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slipstream.engine.health import free_port
from tests.e2e.conftest import Daemon, start_daemon, stop_daemon

pytestmark = pytest.mark.e2e


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[tuple[Daemon, str]]:
    """A daemon listening on TCP too (PostgreSQL and key values are not asked for), and its URL."""
    port = free_port()
    d = start_daemon(tmp_path / "home", SLIPSTREAM_API_LISTEN=f"127.0.0.1:{port}")
    try:
        yield d, f"https://127.0.0.1:{port}"
    finally:
        stop_daemon(d)


def make_token(d: Daemon, name: str, scope: str) -> str:
    """A token made over the unix socket, which needs none (as 'slipstream tokens create' does)."""
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.home / "run" / "api.sock"))) as local:
        made = local.post("http://slipstream/v1/tokens", json={"name": name, "scope": scope})
    assert made.status_code == 200, made.text
    return str(made.json()["token"])


def test_tokens_are_required_checked_and_scoped_over_tls(remote: tuple[Daemon, str]) -> None:
    d, url = remote
    ca = d.home / "api-tls" / "ca.crt"
    fetched = d.cli("tokens", "ca")
    assert fetched.returncode == 0 and fetched.stdout == ca.read_text()
    created = d.cli("tokens", "create", "r", "--scope", "read")
    assert created.returncode == 0 and "shown only now" in created.stderr, created.stderr
    read = created.stdout.strip()
    assert created.stdout == read + "\n"  # the token alone on stdout: TOKEN=$(slipstream tokens create ...)
    deploy, admin, gone = (make_token(d, n, s) for n, s in (("d", "deploy"), ("a", "admin"), ("gone", "admin")))
    assert d.cli("tokens", "revoke", "gone").returncode == 0

    http = httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10)

    def call(method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.request(method, path, headers=headers, **kw)

    assert call("GET", "/v1/status", None).status_code == 401
    assert call("GET", "/v1/status", read[:-2] + "xx").status_code == 401
    assert call("GET", "/v1/status", gone).status_code == 401
    assert call("GET", "/v1/status", read).status_code == 200
    assert call("POST", "/v1/services/web/cancel", read).status_code == 403
    assert call("POST", "/v1/tokens", deploy, json={"name": "x", "scope": "admin"}).status_code == 403
    made = call("POST", "/v1/tokens", admin, json={"name": "x", "scope": "read"})
    assert made.status_code == 200 and made.json()["token"].startswith("slp_")
    listed = call("GET", "/v1/tokens", admin).json()
    assert sorted(t["name"] for t in listed["tokens"]) == ["a", "d", "r", "x"]
    assert listed["listener"]["url"] == url and listed["listener"]["ca_fingerprint"]
    with pytest.raises(httpx.ConnectError):  # the system's CAs do not know the daemon's
        httpx.get(f"{url}/v1/health", timeout=10)
    http.close()

    env = {**d.env, "SLIPSTREAM_API_URL": url, "SLIPSTREAM_TOKEN": read, "SLIPSTREAM_API_CA": str(ca)}
    env["SLIPSTREAM_HOME"] = str(d.home.parent / "elsewhere")  # nothing local: no socket to fall back on
    status = d.cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.lstrip().startswith("{") and '"services": []' in status.stdout
    untrusted = d.cli("status", env={k: v for k, v in env.items() if k != "SLIPSTREAM_API_CA"})
    assert untrusted.returncode == 1 and "does not trust" in untrusted.stderr

    log = (d.home / "daemon.log").read_text()
    assert not any(t.split("_", 2)[2] in log for t in (read, deploy, admin, gone, made.json()["token"]))
