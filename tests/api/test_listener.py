"""The TCP listener's pieces: its TLS files (made once, re-issued when the address changes), its
socket (a taken port is a clear error; accepted connections send small answers at once)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import socket
import ssl
from pathlib import Path

import pytest

from slipstream.api.listener import bind_tcp, ensure_tls, fingerprint, prepare_listener
from slipstream.databases import tls
from slipstream.engine.health import free_port
from slipstream.errors import Conflict, InvalidInput
from slipstream.settings import Settings

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def test_tls_files_are_made_once_and_the_certificate_follows_the_address(tmp_path: Path) -> None:
    d = tmp_path / "api-tls"
    ensure_tls(d, ("localhost", "127.0.0.1"), NOW)
    assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "ca.key", "server.crt", "server.key"]
    assert all(p.stat().st_mode & 0o077 == 0 for p in [d, *d.iterdir()])
    first = {p.name: p.read_bytes() for p in d.iterdir()}
    ensure_tls(d, ("localhost", "127.0.0.1"), NOW)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == first
    ensure_tls(d, ("localhost", "127.0.0.1", "10.1.2.3"), NOW)
    assert (d / "ca.crt").read_bytes() == first["ca.crt"]  # clients keep trusting the same CA
    assert "10.1.2.3" in tls.cert_names((d / "server.crt").read_bytes())
    ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
    ctx.load_cert_chain(d / "server.crt", d / "server.key")  # the pair matches
    assert len(fingerprint(first["ca.crt"]).split(":")) == 32


def test_prepare_listener(tmp_path: Path) -> None:
    assert prepare_listener(Settings(home=tmp_path)) is None
    own = prepare_listener(Settings(home=tmp_path, api_listen=("127.0.0.1", 8443)))
    assert own is not None and own.url == "https://127.0.0.1:8443"
    assert own.describe()["ca_pem"] == (tmp_path / "api-tls" / "ca.crt").read_text()
    given = Settings(home=tmp_path, api_listen=("::1", 8443), api_cert=tmp_path / "no.crt", api_key=tmp_path / "no.key")
    with pytest.raises(InvalidInput, match="no.crt does not exist"):
        prepare_listener(given)
    d = tmp_path / "api-tls"
    mixed = Settings(home=tmp_path, api_listen=("::1", 8443), api_cert=d / "server.crt", api_key=d / "ca.key")
    with pytest.raises(InvalidInput, match="not a usable certificate and key"):
        prepare_listener(mixed)
    operator = prepare_listener(dataclasses.replace(mixed, api_key=d / "server.key"))
    assert operator is not None and operator.ca_file is None and operator.url == "https://[::1]:8443"


def test_a_taken_port_is_a_conflict_naming_the_setting() -> None:
    taken = bind_tcp("127.0.0.1", free_port())
    try:
        with pytest.raises(Conflict) as exc:
            bind_tcp("127.0.0.1", taken.getsockname()[1])
        assert exc.value.hint == "pick another SLIPSTREAM_API_LISTEN"
    finally:
        taken.close()


def test_accepted_connections_have_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it each small answer
    waited for the client's delayed ACK (about 40 ms a request, measured on the daemon)."""
    sock = bind_tcp("127.0.0.1", free_port())

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                s = transport.get_extra_info("socket")
                accepted.set_result(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname())
            value = await asyncio.wait_for(accepted, 5)
            writer.close()
            return value

    assert asyncio.run(accept_one()) != 0
