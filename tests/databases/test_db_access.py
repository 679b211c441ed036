"""ipAllowList as pg_hba rules, against the real server.

Test traffic stays on loopback: a small relay accepts on 127.0.0.1 and connects to PostgreSQL
from 127.0.0.3, so the server sees a client address that the built-in loopback rule (127.0.0.1/32)
does not cover and only an allow-list rule can let in.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest

from slipstream.databases import Cluster, DatabaseInfo
from slipstream.databases.server import check_listen
from slipstream.errors import InvalidInput

SOURCE = "127.0.0.3"


class Relay:
    """Forward every connection to (host, port), dialling out from SOURCE."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.socket()
            upstream.bind((SOURCE, 0))
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def relay(cluster: Cluster) -> Iterator[Relay]:
    r = Relay("127.0.0.1", cluster.port)
    try:
        yield r
    finally:
        r.close()


def via(relay: Relay, info: DatabaseInfo) -> Callable[[], object]:
    def connect() -> object:
        with psycopg.connect(
            host="127.0.0.1",
            port=relay.port,
            user=info.user,
            password=info.password,
            dbname=info.database,
            connect_timeout=5,
        ) as conn:
            return conn.execute("SELECT inet_client_addr()::text").fetchone()[0]  # type: ignore[index]

    return connect


def test_allow_list_lets_in_only_its_addresses_and_its_role(cluster: Cluster, db: DatabaseInfo, relay: Relay) -> None:
    other = cluster.ensure_database(f"t{secrets.token_hex(4)}-other", password=secrets.token_urlsafe(16))
    try:
        with pytest.raises(psycopg.OperationalError, match=f'no pg_hba.conf entry for host "{SOURCE}"'):
            via(relay, db)()  # empty list: only loopback's own rule, which 127.0.0.3 is not under
        assert cluster.set_access({"main": (db.database, db.user, [f"{SOURCE}/32"])})
        assert via(relay, db)() == f"{SOURCE}/32"
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
            via(relay, other)()  # the rule names this database's role, not every role
        assert cluster.set_access({"main": (db.database, db.user, ["127.0.0.0/30"])})  # a CIDR block
        assert via(relay, db)() == f"{SOURCE}/32"
        cluster.set_access({})
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
            via(relay, db)()
    finally:
        cluster.set_access({})
        cluster.drop_database(other)


def test_rules_survive_a_server_restart(new_cluster: Callable[..., Cluster]) -> None:
    c = new_cluster("pg-access")
    c.start()
    info = c.ensure_database("keep", password=secrets.token_urlsafe(16))
    c.set_access({"keep": (info.database, info.user, [f"{SOURCE}/32"])})
    c.stop()
    c.start()
    r = Relay("127.0.0.1", c.port)
    try:
        assert via(r, info)() == f"{SOURCE}/32"
    finally:
        r.close()


def test_listen_addresses_always_keep_loopback() -> None:
    assert check_listen(["127.0.0.1"]) == ("127.0.0.1",)
    assert check_listen(["10.0.0.5", " "]) == ("127.0.0.1", "10.0.0.5")
    assert check_listen(["0.0.0.0", "*"]) == ("*",)
    with pytest.raises(InvalidInput, match="not an IP address"):
        check_listen(["db.example.com"])
