"""Private services (TCP listeners on loopback) against the real HAProxy 2.6 binary."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
from proxy_support import EchoClient, echo, free_port, get

from slipstream.errors import Conflict, InvalidInput, NotFound
from slipstream.proxy import Proxy, Route, ServerState

pytestmark = pytest.mark.e2e


def serve_private(proxy: Proxy, service: str, name: str, port: int) -> int:
    """Give ``service`` a private listener with one ready server; return the listener's port."""
    listener = proxy.set_private_route(service)
    proxy.add_server(service, name, port)
    proxy.set_state(service, name, "ready")
    return listener


def wait_idle(proxy: Proxy, service: str, timeout: float = 5) -> None:
    """Wait (bounded) until HAProxy counts no open connection to ``service``'s servers.

    A TCP session ends only once the server side has closed too, a moment after the client.
    """
    deadline = time.monotonic() + timeout
    while any(s.sessions for s in proxy.servers(service)) and time.monotonic() < deadline:
        time.sleep(0.01)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs the process ``pid`` listens on."""
    return {
        (c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN
    }


def test_private_service_answers_on_its_loopback_port(proxy: Proxy, echo_upstream) -> None:
    a = echo_upstream("A")
    port = serve_private(proxy, "db", "d1-1", a.port)
    assert proxy.set_private_route("db") == port  # idempotent: same listener
    assert echo(port, "hello") == "A hello"
    wait_idle(proxy, "db")
    assert proxy.routes() == [Route("db", (), (ServerState("d1-1", a.port, "ready"),), kind="private", port=port)]
    assert proxy.servers("db") == [ServerState("d1-1", a.port, "ready")]
    assert get(proxy.http_port, "db.localhost")[0] == 503  # not reachable by host name
    pid = proxy.pid()
    assert pid is not None
    private = set(json.loads((proxy.proxy_dir / "private.json").read_text())["ports"])
    assert port in private and len(private) == 8
    assert {("127.0.0.1", p) for p in private} <= listening_addresses(pid)


def test_private_and_http_services_share_the_proxy(proxy: Proxy, echo_upstream, upstream) -> None:
    web = upstream("W")
    proxy.set_route("web", ["web.localhost"])
    proxy.add_server("web", "d1-1", web.port)
    proxy.set_state("web", "d1-1", "ready")
    port = serve_private(proxy, "db", "d2-1", echo_upstream("A").port)
    assert json.loads(get(proxy.http_port, "web.localhost")[1])["id"] == "W"
    assert echo(port) == "A ping"
    assert [(r.service, r.kind, r.port) for r in proxy.routes()] == [("db", "private", port), ("web", "http", None)]
    assert proxy.private_ports() == {"db": port}  # the services map alone, no slot read
    with pytest.raises(Conflict, match="service db is a private service"):
        proxy.set_route("db", ["db.localhost"])
    with pytest.raises(Conflict, match="service web is routed by host name, not as a private"):
        proxy.set_private_route("web")


def test_flip_under_load_fails_no_connection(proxy: Proxy, echo_upstream) -> None:
    a, b = echo_upstream("A"), echo_upstream("B")
    port = serve_private(proxy, "db", "a", a.port)
    proxy.add_server("db", "b", b.port)
    seen: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                answer = echo(port, "ping")
            except OSError as exc:
                answer = repr(exc)
            with lock:
                if answer.endswith(" ping"):
                    ident = answer.split()[0]
                    seen[ident] = seen.get(ident, 0) + 1
                else:
                    failures.append(answer or "connection closed without an answer")

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    flips = 0
    try:
        while any(t.is_alive() for t in threads) and flips < 200:
            time.sleep(0.05)
            if flips % 2 == 0:
                proxy.switch("db", ready=["b"], drain=["a"])
            else:
                proxy.switch("db", ready=["a"], drain=["b"])
            flips += 1
    finally:
        for t in threads:
            t.join(timeout=10)
    assert failures == []
    assert flips >= 10 and seen.get("A", 0) > 0 and seen.get("B", 0) > 0, (flips, seen)


def test_open_connection_stays_on_the_drained_server(proxy: Proxy, echo_upstream) -> None:
    a, b = echo_upstream("A"), echo_upstream("B")
    port = serve_private(proxy, "db", "d1-1", a.port)
    proxy.add_server("db", "d2-1", b.port)
    held = EchoClient(port)
    try:
        assert held.ask("one") == "A one"
        proxy.switch("db", ready=["d2-1"], drain=["d1-1"])
        assert echo(port) == "B ping"  # new connections go to the new server
        assert held.ask("two") == "A two"  # the open one finishes where it began
        assert {s.name: s.sessions for s in proxy.servers("db")}["d1-1"] == 1
    finally:
        held.close()
    proxy.remove_server("db", "d1-1", timeout=5)  # its last connection has closed
    assert [s.name for s in proxy.servers("db")] == ["d2-1"]


def test_port_is_stable_across_adoption_and_restart(proxy_dir: Path, echo_upstream) -> None:
    a, b = echo_upstream("A"), echo_upstream("B")
    http_port = free_port()
    first = Proxy(proxy_dir, http_port, pool_size=4)
    try:
        first.start()
        first.set_private_route("cache")  # takes the first listener
        port = serve_private(first, "db", "d1-1", a.port)
        first.add_server("db", "d2-1", b.port)
        first.switch("db", ready=["d2-1"], drain=["d1-1"])
        pid = first.pid()
        before = first.routes()

        second = Proxy(proxy_dir, http_port, pool_size=4)  # the daemon restarted
        second.start([Route("db", (), (ServerState("d2-1", b.port, "ready"),), kind="private", port=port)])
        assert second.pid() == pid and second.routes() == before
        assert second.set_private_route("db") == port
        assert echo(port) == "B ping"

        second.stop(grace=2)  # HAProxy itself restarts
        third = Proxy(proxy_dir, http_port, pool_size=4)
        third.start([r for r in before if r.service == "db"])
        assert third.pid() != pid
        assert third.routes() == [r for r in before if r.service == "db"]
        assert echo(port) == "B ping"
    finally:
        Proxy(proxy_dir, http_port, pool_size=4).stop(grace=2)


def test_adopting_without_private_json_reads_the_ports_back(proxy: Proxy, echo_upstream) -> None:
    port = serve_private(proxy, "db", "d1-1", echo_upstream("A").port)
    recorded = (proxy.proxy_dir / "private.json").read_text()
    (proxy.proxy_dir / "private.json").unlink()
    again = Proxy(proxy.proxy_dir, proxy.http_port, pool_size=8)
    again.start()
    assert again.set_private_route("db") == port
    assert (proxy.proxy_dir / "private.json").read_text() == recorded


def test_restart_keeps_ports_and_a_pinned_port_must_exist(proxy_dir: Path, echo_upstream) -> None:
    a = echo_upstream("A")
    p = Proxy(proxy_dir, free_port(), pool_size=2, private_pool=2)
    try:
        p.start()
        ports = json.loads((proxy_dir / "private.json").read_text())["ports"]
        p.stop(grace=2)
        p.start([Route("db", (), (ServerState("d1-1", a.port, "ready"),), kind="private", port=ports[1])])
        assert json.loads((proxy_dir / "private.json").read_text())["ports"] == ports
        assert echo(ports[1]) == "A ping"
        p.stop(grace=2)
        unknown = free_port()
        with pytest.raises(
            Conflict,
            match=f"private service db must keep port {unknown}, which is not one of the proxy's private ports",
        ):
            p.start([Route("db", (), kind="private", port=unknown)])
        assert not p.running()
    finally:
        p.stop(grace=2)


def test_private_pool_exhaustion_raises_conflict(proxy_dir: Path, echo_upstream) -> None:
    p = Proxy(proxy_dir, free_port(), pool_size=2, private_pool=2)
    a = echo_upstream("A")
    try:
        p.start()
        first = serve_private(p, "one", "d1-1", a.port)
        second = p.set_private_route("two")
        assert first != second
        with pytest.raises(
            Conflict, match="all 2 private service ports of the proxy are in use; cannot route private service three"
        ):
            p.set_private_route("three")
        p.remove_route("one")  # frees its server and its listener
        assert echo(first, "x") == ""  # nobody behind it: HAProxy closes
        with pytest.raises(NotFound):
            p.servers("one")
        assert p.set_private_route("three") == first
        assert [(r.service, r.port) for r in p.routes()] == [("three", first), ("two", second)]
    finally:
        p.stop(grace=2)


def test_private_ports_given_are_used_and_checked(proxy_dir: Path, echo_upstream) -> None:
    chosen = [free_port(), free_port()]
    while chosen[0] == chosen[1]:
        chosen[1] = free_port()
    http_port = free_port()
    p = Proxy(proxy_dir, http_port, private_pool=2, private_ports=chosen)
    try:
        p.start()
        assert json.loads((proxy_dir / "private.json").read_text()) == {"ports": chosen}
        assert serve_private(p, "db", "d1-1", echo_upstream("A").port) == chosen[0]
        assert echo(chosen[0]) == "A ping"
        other = Proxy(proxy_dir, http_port, private_pool=2, private_ports=chosen[::-1])
        with pytest.raises(Conflict, match="or other private service ports"):
            other.start()
        assert p.running()
    finally:
        p.stop(grace=2)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([9001], "1 private service ports given for a pool of 2 listeners"),
        ([9001, 9001], "repeat a port"),
        ([9001, 8080], "private service port 8080 is also the HTTP port"),
        ([9001, 0], "private service port 0 is not a TCP port"),
    ],
)
def test_bad_private_ports_are_rejected(tmp_path: Path, ports: list[int], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Proxy(tmp_path / "proxy", 8080, private_pool=2, private_ports=ports)


def test_a_private_port_taken_by_another_program_raises_conflict(proxy_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = Proxy(proxy_dir, free_port(), private_pool=2, private_ports=[free_port(), port])
        with pytest.raises(
            Conflict,
            match=rf"port 127.0.0.1:{port} \(a private listener\) is in "
            "use by another program",
        ):
            p.start()
        assert not p.running()
