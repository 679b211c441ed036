"""The proxy against the real HAProxy 2.6 binary: routing, the flip, drain, adoption, errors."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from proxy_support import KeepAliveLoad, free_port, get

from slipstream.errors import Conflict, InvalidInput, NotFound, Unavailable
from slipstream.proxy import Proxy, Route, ServerState
from slipstream.proxy.admin import AdminClient
from slipstream.proxy.parse import parse_servers_state

pytestmark = pytest.mark.e2e


def body_id(body: bytes) -> str:
    return str(json.loads(body)["id"])


def serve(proxy: Proxy, service: str, host: str, name: str, port: int) -> None:
    """Route ``host`` to ``service`` with one ready server."""
    proxy.set_route(service, [host])
    proxy.add_server(service, name, port)
    proxy.set_state(service, name, "ready")


def test_route_by_host_passes_host_and_adds_forwarded_headers(proxy: Proxy, upstream) -> None:
    a = upstream("A")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    status, body = get(proxy.http_port, f"Web.LocalHost:{proxy.http_port}")
    assert status == 200
    assert json.loads(body) == {
        "id": "A",
        "host": f"Web.LocalHost:{proxy.http_port}",
        "xff": "127.0.0.1",
        "proto": "http",
    }


def test_unknown_host_gets_a_clear_503(proxy: Proxy, upstream) -> None:
    serve(proxy, "web", "web.localhost", "d1-1", upstream("A").port)
    status, body = get(proxy.http_port, "nothing.localhost")
    assert status == 503
    assert b"No service answers at this host name" in body


def test_route_without_ready_server_gets_a_clear_503(proxy: Proxy, upstream) -> None:
    proxy.set_route("web", ["web.localhost"])
    assert get(proxy.http_port, "web.localhost")[0] == 503
    proxy.add_server("web", "d1-1", upstream("A").port)  # added in maint: still no traffic
    assert proxy.servers("web") == [ServerState("d1-1", proxy.servers("web")[0].port, "maint", 0)]
    status, body = get(proxy.http_port, "web.localhost")
    assert status == 503 and b"no instance ready to take requests" in body
    proxy.set_state("web", "d1-1", "ready")
    assert get(proxy.http_port, "web.localhost")[0] == 200


def test_new_route_answers_without_reload(proxy: Proxy, upstream) -> None:
    pid = proxy.pid()
    serve(proxy, "web", "web.localhost", "d1-1", upstream("A").port)
    assert get(proxy.http_port, "api.localhost")[0] == 503
    serve(proxy, "api", "api.localhost", "d2-1", upstream("B").port)
    status, body = get(proxy.http_port, "api.localhost")
    assert (status, body_id(body)) == (200, "B")
    assert body_id(get(proxy.http_port, "web.localhost")[1]) == "A"
    assert proxy.pid() == pid


def test_set_route_replaces_hosts(proxy: Proxy, upstream) -> None:
    serve(proxy, "web", "old.localhost", "d1-1", upstream("A").port)
    proxy.set_route("web", ["new.localhost", "www.localhost"])
    assert get(proxy.http_port, "old.localhost")[0] == 503
    assert get(proxy.http_port, "new.localhost")[0] == 200
    assert [r.hosts for r in proxy.routes()] == [("new.localhost", "www.localhost")]


def test_switch_under_keep_alive_load_drops_nothing(proxy: Proxy, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    serve(proxy, "web", "web.localhost", "a", a.port)
    proxy.add_server("web", "b", b.port)
    stop = threading.Event()
    seen: dict[str, int] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
        deadline = time.monotonic() + 3
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/", headers={"Host": "web.localhost"})
                resp = conn.getresponse()
                body = resp.read()
                with lock:
                    if resp.status != 200:
                        failures.append(f"status {resp.status}")
                    else:
                        ident = body_id(body)
                        seen[ident] = seen.get(ident, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            time.sleep(0.05)
            if i % 2 == 0:
                proxy.switch("web", ready=["b"], drain=["a"])
            else:
                proxy.switch("web", ready=["a"], drain=["b"])
        time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert failures == []
    assert seen.get("A", 0) > 0 and seen.get("B", 0) > 0, seen
    assert {s.name: s.admin for s in proxy.servers("web")} == {"a": "ready", "b": "drain"}


def test_drain_then_remove_server(proxy: Proxy, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    proxy.add_server("web", "d2-1", b.port)
    proxy.switch("web", ready=["d2-1"], drain=["d1-1"])
    assert {s.name: s.admin for s in proxy.servers("web")} == {"d1-1": "drain", "d2-1": "ready"}
    assert body_id(get(proxy.http_port, "web.localhost")[1]) == "B"
    proxy.remove_server("web", "d1-1")
    assert [s.name for s in proxy.servers("web")] == ["d2-1"]
    proxy.remove_server("web", "d1-1")  # already gone: nothing to do
    assert body_id(get(proxy.http_port, "web.localhost")[1]) == "B"


def test_remove_server_waits_for_the_request_in_flight(proxy: Proxy, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    proxy.add_server("web", "d2-1", b.port)
    result: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: result.append(get(proxy.http_port, "web.localhost", "/slow=0.6")))
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while proxy.servers("web")[0].sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.servers("web")[0].sessions == 1  # the slow request is on d1-1
        proxy.switch("web", ready=["d2-1"], drain=["d1-1"])
        proxy.remove_server("web", "d1-1", timeout=5)
    finally:
        slow.join(timeout=10)
    assert result and result[0][0] == 200 and body_id(result[0][1]) == "A"
    assert [s.name for s in proxy.servers("web")] == ["d2-1"]


def test_remove_server_gives_up_with_conflict(proxy: Proxy, upstream) -> None:
    serve(proxy, "web", "web.localhost", "d1-1", upstream("A").port)
    slow = threading.Thread(target=lambda: get(proxy.http_port, "web.localhost", "/slow=1"))
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while proxy.servers("web")[0].sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(Conflict, match="server d1-1 of web still has requests in flight"):
            proxy.remove_server("web", "d1-1", timeout=0.1)
        assert proxy.servers("web")[0].admin == "maint"
    finally:
        slow.join(timeout=10)
    proxy.remove_server("web", "d1-1")
    assert proxy.servers("web") == []


def test_switch_checks_names_before_changing_anything(proxy: Proxy, upstream) -> None:
    serve(proxy, "web", "web.localhost", "d1-1", upstream("A").port)
    proxy.add_server("web", "d2-1", upstream("B").port)
    with pytest.raises(NotFound, match="service web has no server d9-9"):
        proxy.switch("web", ready=["d2-1"], drain=["d9-9"])
    assert {s.name: s.admin for s in proxy.servers("web")} == {"d1-1": "ready", "d2-1": "maint"}
    with pytest.raises(InvalidInput, match="both ready and drain"):
        proxy.switch("web", ready=["d1-1"], drain=["d1-1"])
    with pytest.raises(NotFound, match="service nope has no route"):
        proxy.switch("nope", ready=["d1-1"], drain=[])


def test_add_server_is_idempotent_but_not_silent(proxy: Proxy, upstream) -> None:
    a = upstream("A")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    proxy.add_server("web", "d1-1", a.port)  # same server again: no change, still ready
    assert proxy.servers("web")[0].admin == "ready"
    with pytest.raises(Conflict, match="already exists on port"):
        proxy.add_server("web", "d1-1", a.port + 1)


def test_host_cannot_belong_to_two_services(proxy: Proxy) -> None:
    proxy.set_route("web", ["web.localhost"])
    with pytest.raises(Conflict, match="host web.localhost is already routed to service web"):
        proxy.set_route("api", ["api.localhost", "web.localhost"])
    assert [r.service for r in proxy.routes()] == ["web"]


def test_pool_exhaustion_raises_conflict_and_remove_route_frees(proxy_dir: Path) -> None:
    p = Proxy(proxy_dir, free_port(), pool_size=2)
    try:
        p.start()
        p.set_route("a", ["a.localhost"])
        p.set_route("b", ["b.localhost"])
        with pytest.raises(Conflict, match="all 2 proxy backends are in use; cannot route"):
            p.set_route("c", ["c.localhost"])
        p.remove_route("a")
        p.set_route("c", ["c.localhost"])
        assert [(r.service, r.hosts) for r in p.routes()] == [("b", ("b.localhost",)), ("c", ("c.localhost",))]
        assert get(p.http_port, "a.localhost")[0] == 503
        assert json.loads((proxy_dir / "backends.json").read_text()) == {
            "services": {"b": "be_01", "c": "be_00"},
            "slots": {},
        }
    finally:
        p.stop(grace=2)


def test_remove_route_deletes_servers(proxy: Proxy, upstream) -> None:
    serve(proxy, "web", "web.localhost", "d1-1", upstream("A").port)
    proxy.remove_route("web")
    assert proxy.routes() == []
    assert get(proxy.http_port, "web.localhost")[0] == 503
    with pytest.raises(NotFound):
        proxy.servers("web")
    proxy.remove_route("web")  # already gone: nothing to do


def test_second_proxy_adopts_the_running_haproxy(proxy_dir: Path, upstream) -> None:
    port = free_port()
    first = Proxy(proxy_dir, port, pool_size=8)
    a, b = upstream("A"), upstream("B")
    try:
        first.start()
        serve(first, "web", "web.localhost", "d1-1", a.port)
        first.add_server("web", "d2-1", b.port)
        first.switch("web", ready=["d2-1"], drain=["d1-1"])
        first.set_route("api", ["api.localhost"])
        pid = first.pid()
        before = first.routes()

        second = Proxy(proxy_dir, port, pool_size=8)  # the daemon restarted
        second.start([Route("web", ("web.localhost",), (ServerState("d1-1", a.port, "ready"),))])
        assert second.pid() == pid
        assert second.routes() == before  # adopted untouched: d1-1 stays in drain
        assert body_id(get(port, "web.localhost")[1]) == "B"
    finally:
        Proxy(proxy_dir, port, pool_size=8).stop(grace=2)
    assert pid is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (proxy_dir / "haproxy.pid").exists() and not (proxy_dir / "admin.sock").exists()
    assert not first.running()
    with pytest.raises(Unavailable):
        first.routes()


def test_adopting_adds_missing_routes_and_servers(proxy: Proxy, upstream) -> None:
    a = upstream("A")
    proxy.set_route("web", ["web.localhost"])
    again = Proxy(proxy.proxy_dir, proxy.http_port, pool_size=8)
    again.start(
        [
            Route("web", ("web.localhost", "www.localhost"), (ServerState("d1-1", a.port, "ready"),)),
            Route("api", ("api.localhost",)),
        ]
    )
    assert again.routes() == [
        Route("api", ("api.localhost",)),
        Route("web", ("web.localhost", "www.localhost"), (ServerState("d1-1", a.port, "ready"),)),
    ]
    assert body_id(get(proxy.http_port, "www.localhost")[1]) == "A"


def test_restarted_haproxy_regains_its_routes(proxy_dir: Path, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    routes = [
        Route("web", ("web.localhost",), (ServerState("d2-1", b.port, "ready"), ServerState("d1-1", a.port, "drain"))),
        Route("api", ("api.localhost",), (ServerState("d3-1", a.port, "maint"),)),
    ]
    p = Proxy(proxy_dir, free_port(), pool_size=8)
    try:
        p.start(routes)
        first_pid = p.pid()
        assert body_id(get(p.http_port, "web.localhost")[1]) == "B"
        p.stop(grace=2)
        assert not p.running()
        p.start(routes)
        assert p.pid() != first_pid
        assert sorted(p.routes(), key=lambda r: r.service) == sorted(
            [
                Route(
                    "web",
                    ("web.localhost",),
                    (ServerState("d1-1", a.port, "drain"), ServerState("d2-1", b.port, "ready")),
                ),
                Route("api", ("api.localhost",), (ServerState("d3-1", a.port, "maint"),)),
            ],
            key=lambda r: r.service,
        )
        assert body_id(get(p.http_port, "web.localhost")[1]) == "B"
        assert get(p.http_port, "api.localhost")[0] == 503
    finally:
        p.stop(grace=2)


def test_port_in_use_raises_conflict(proxy_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = Proxy(proxy_dir, port)
        with pytest.raises(Conflict, match=f"port {port} is in use"):
            p.start()
        assert not p.running()


def test_unusable_paths_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="characters HAProxy's config cannot hold"):
        Proxy(tmp_path / "my proxy", 8080)
    with pytest.raises(InvalidInput, match="too long for a unix socket"):
        Proxy(tmp_path / ("x" * 90), 8080)


def test_adoption_refuses_a_haproxy_on_another_port(proxy: Proxy) -> None:
    other = Proxy(proxy.proxy_dir, free_port(), pool_size=8)
    with pytest.raises(Conflict, match="was started with another port, address, backend pool or slot count"):
        other.start()
    assert proxy.running()


def test_adoption_refuses_a_haproxy_without_the_backup_slots(proxy: Proxy) -> None:
    """An HAProxy started before the settle window's backup slots existed cannot back a flip."""
    other = Proxy(proxy.proxy_dir, proxy.http_port, pool_size=8, backup_slots=2)
    with pytest.raises(Conflict, match="backend pool or slot count"):
        other.start()
    assert proxy.running()


def test_server_connections_are_kept_alive_and_reused(proxy: Proxy, upstream) -> None:
    a = upstream("A")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
    try:
        for _ in range(200):
            conn.request("GET", "/", headers={"Host": "web.localhost"})
            resp = conn.getresponse()
            assert (resp.status, body_id(resp.read())) == (200, "A")
    finally:
        conn.close()
    assert a.connections <= 5  # HAProxy kept its connection to the upstream open


def records(proxy_dir: Path) -> dict[str, dict[str, object]]:
    return dict(json.loads((proxy_dir / "backends.json").read_text())["slots"])


def test_a_reused_slot_never_reaches_the_instance_it_held(proxy: Proxy, upstream) -> None:
    a, b, c = upstream("A"), upstream("B"), upstream("C")
    clients = [http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5) for _ in range(3)]

    def burst(rounds: int) -> set[str]:
        seen = set()
        for _ in range(rounds):
            for conn in clients:  # the same client connections all along
                conn.request("GET", "/", headers={"Host": "web.localhost"})
                resp = conn.getresponse()
                assert resp.status == 200
                seen.add(body_id(resp.read()))
        return seen

    try:
        serve(proxy, "web", "web.localhost", "d1-1", a.port)
        assert burst(10) == {"A"}
        slot_of_a = next(k for k, v in records(proxy.proxy_dir).items() if v["name"] == "d1-1")
        proxy.add_server("web", "d2-1", b.port)
        proxy.switch("web", ready=["d2-1"], drain=["d1-1"])
        assert burst(10) == {"B"}
        proxy.remove_server("web", "d1-1")  # A keeps running: its connections could linger
        proxy.add_server("web", "d3-1", c.port)  # takes the slot d1-1 had
        assert records(proxy.proxy_dir)[slot_of_a] == {"name": "d3-1", "port": c.port}
        proxy.switch("web", ready=["d3-1"], drain=["d2-1"])
        assert burst(20) == {"C"}
    finally:
        for conn in clients:
            conn.close()


def test_a_full_backend_raises_conflict(proxy_dir: Path, upstream) -> None:
    p = Proxy(proxy_dir, free_port(), pool_size=2, slots=2)
    a = upstream("A")
    try:
        p.start()
        serve(p, "web", "web.localhost", "d1-1", a.port)
        p.add_server("web", "d2-1", a.port)
        with pytest.raises(
            Conflict, match="all 2 proxy server slots of service web are in use; cannot add server d3-1"
        ):
            p.add_server("web", "d3-1", a.port)
        p.remove_server("web", "d1-1")
        p.add_server("web", "d3-1", a.port)
        assert [s.name for s in p.servers("web")] == ["d2-1", "d3-1"]
        with pytest.raises(Conflict, match="service big has 3 servers but a proxy backend holds at most 2"):
            p.start([Route("big", (), tuple(ServerState(f"d1-{i}", 9000 + i, "maint") for i in range(3)))])
    finally:
        p.stop(grace=2)


def test_slot_names_are_believed_only_where_the_live_port_agrees(proxy: Proxy, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    proxy.add_server("web", "d2-1", b.port)
    path = proxy.proxy_dir / "backends.json"
    data = json.loads(path.read_text())
    slot_b = next(k for k, v in data["slots"].items() if v["name"] == "d2-1")
    data["slots"][slot_b]["port"] = b.port + 1  # a record the live state denies
    data["slots"]["be_00/s05"] = {"name": "d9-9", "port": 5555}  # never got its address
    path.write_text(json.dumps(data))

    again = Proxy(proxy.proxy_dir, proxy.http_port, pool_size=8)  # the daemon restarted
    again.start()
    slot_name = slot_b.split("/")[1]
    assert again.servers("web") == [ServerState("d1-1", a.port, "ready"), ServerState(slot_name, b.port, "maint")]
    assert records(proxy.proxy_dir) == {"be_00/s00": {"name": "d1-1", "port": a.port}}
    again.remove_server("web", slot_name)  # the unexplained server can be pruned by its slot
    assert again.servers("web") == [ServerState("d1-1", a.port, "ready")]
    assert body_id(get(proxy.http_port, "web.localhost")[1]) == "A"


def test_remove_server_waits_without_blocking_other_services(proxy: Proxy, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    serve(proxy, "web", "web.localhost", "d1-1", a.port)
    serve(proxy, "api", "api.localhost", "d2-1", b.port)
    proxy.add_server("api", "d2-2", b.port)
    slow = threading.Thread(target=lambda: get(proxy.http_port, "web.localhost", "/slow=1"))
    slow.start()
    remover = threading.Thread(target=lambda: proxy.remove_server("web", "d1-1", timeout=5))
    try:
        deadline = time.monotonic() + 5
        while proxy.servers("web")[0].sessions == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        remover.start()
        while proxy.servers("web")[0].admin != "maint" and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.switch("api", ready=["d2-2"], drain=["d2-1"])  # while remove_server waits
        assert remover.is_alive() and proxy.servers("web")[0].sessions == 1
        assert {s.name: s.admin for s in proxy.servers("api")} == {"d2-1": "drain", "d2-2": "ready"}
    finally:
        slow.join(timeout=10)
        remover.join(timeout=10)
    assert proxy.servers("web") == []


def test_add_server_rejects_slot_names_and_the_placeholder_port(proxy: Proxy) -> None:
    with pytest.raises(InvalidInput, match="server name s03 is reserved"):
        proxy.add_server("web", "s03", 9000)
    with pytest.raises(InvalidInput, match="port 1 of server d1-1 marks a free proxy slot"):
        proxy.add_server("web", "d1-1", 1)


# A keep-alive HTTP upstream in a process of its own, so that a test can kill it like a crash.
_CRASHABLE = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"id": sys.argv[2]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""


def backup_slots(proxy: Proxy, backend: str) -> dict[str, tuple[int, str]]:
    """The held backup slots of ``backend``: slot -> (port, admin state), from the live process."""
    (answer,) = AdminClient(proxy.socket_path).send([f"show servers state {backend}"], check=False)
    rows = parse_servers_state(answer)
    return {r.name: (r.port, r.admin) for r in rows if r.name.startswith("b") and r.port != 1}


def test_a_new_server_dying_after_the_flip_loses_no_request(proxy: Proxy, upstream) -> None:
    """The settle window's backup: B takes the traffic, is killed under keep-alive load, and every
    request it refused or dropped is replayed on A (which is only drained), none fails."""
    a = upstream("A")
    port = free_port()
    b = subprocess.Popen([sys.executable, "-c", _CRASHABLE, str(port), "B"], stdout=subprocess.PIPE)
    try:
        assert b.stdout is not None and b.stdout.readline() == b"ready\n"
        serve(proxy, "web", "web.localhost", "a", a.port)
        proxy.add_server("web", "b", port)
        with KeepAliveLoad(proxy.http_port, "web.localhost", threads=3) as load:
            time.sleep(0.3)
            proxy.switch("web", ready=["b"], drain=["a"], fallback=["a"])
            time.sleep(0.3)
            assert load.seen.get("B", 0) > 0, load.seen
            b.kill()
            b.wait()
            seen_a = load.seen.get("A", 0)
            time.sleep(0.5)
            assert load.seen.get("A", 0) > seen_a  # A took over without a switch back
    finally:
        b.kill()
        b.wait()
    assert load.failures == []
    assert backup_slots(proxy, "be_00") == {"b00": (a.port, "ready")}
    proxy.release_fallback("web")
    assert backup_slots(proxy, "be_00") == {}
    assert {s.name: s.admin for s in proxy.servers("web")} == {"a": "drain", "b": "ready"}


def test_a_second_fallback_replaces_the_first(proxy: Proxy, upstream) -> None:
    a, b = upstream("A"), upstream("B")
    serve(proxy, "web", "web.localhost", "a", a.port)
    proxy.add_server("web", "b", b.port)
    proxy.switch("web", ready=["b"], drain=["a"], fallback=["a"])
    proxy.switch("web", ready=["a"], drain=["b"], fallback=["b"])
    assert backup_slots(proxy, "be_00") == {"b00": (b.port, "ready")}
    assert get(proxy.http_port, "web.localhost")[0] == 200
    proxy.release_fallback("web")
    proxy.release_fallback("web")  # idempotent
    assert backup_slots(proxy, "be_00") == {}
