from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slipstream.engine.health import Target, check_http, check_tcp, free_port, instance_port, probe_many
from slipstream.engine.release import Release, instance_env


def release(**kw: object) -> Release:
    base = dict(
        service="web",
        type="web",
        runtime="python",
        start_command="python app.py",
        build_command=None,
        pre_deploy_command=None,
        health_check_path="/health",
        hosts=("web.localhost",),
        env={"PORT": "1", "FOO": "bar"},
    )
    base.update(kw)
    return Release(**base)  # type: ignore[arg-type]


def test_instance_env_layers_render_variables_and_port_last() -> None:
    env = instance_env(
        release(),
        base={"PATH": "/usr/bin", "HOME": "/root"},
        path_prefix=["/venv/bin"],
        extra={"VIRTUAL_ENV": "/venv"},
        port=4321,
        instance_id="web-d1-1",
        commit="abc",
        http_port=8080,
    )
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert env["PORT"] == "4321" and env["FOO"] == "bar"
    assert env["RENDER"] == "true" and env["RENDER_SERVICE_NAME"] == "web"
    assert env["RENDER_EXTERNAL_URL"] == "http://web.localhost:8080"
    assert env["RENDER_GIT_COMMIT"] == "abc" and env["RENDER_INSTANCE_ID"] == "web-d1-1"


def test_release_round_trip_and_public_hides_values() -> None:
    r = release(secret_keys=("FOO",))
    assert Release.from_dict(r.to_dict()) == r
    assert r.public()["env"] == ["FOO", "PORT"]


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = {"/ok": 200, "/redirect": 302, "/bad": 500}.get(self.path, 404)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize(
    "path, ok, reason", [("/ok", True, "200"), ("/redirect", True, "302"), ("/bad", False, "status 500")]
)
def test_http_check(server: int, path: str, ok: bool, reason: str) -> None:
    p = check_http(server, path, "web.localhost")
    assert p.ok is ok and reason in p.reason


def test_refused_and_tcp() -> None:
    port = free_port()
    assert "refused" in check_http(port, "/", "x").reason
    assert not check_tcp(port).ok


def test_probe_many_answers_as_the_single_checks_do(server: int) -> None:
    """One batch (at most 2 in flight) gives each target the verdict and reason of check_http or
    check_tcp, in order."""
    refused = free_port()
    targets = [
        Target(server, "/ok", "web.localhost"),
        Target(server, "/redirect", "web.localhost"),
        Target(server, "/bad", "web.localhost"),
        Target(refused, "/", "x"),
        Target(server),
        Target(refused),
    ]
    singles = [check_http(t.port, t.path, t.host) if t.path else check_tcp(t.port) for t in targets]
    assert probe_many(targets, parallel=2) == singles
    assert [p.ok for p in singles] == [True, True, False, False, True, False]
    assert probe_many([]) == []


def test_probe_many_times_out_a_silent_app_without_holding_up_the_rest(server: int) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        probes = probe_many([Target(port, "/health", "x"), Target(server, "/ok", "x"), Target(port, "/h", "x")], 0.5)
        took = time.monotonic() - started
    assert [p.ok for p in probes] == [False, True, False]
    assert probes[0].reason == "/health did not answer within 0.5 s"
    assert 0.4 < took < 1.5  # the two silent checks ran side by side: one timeout, not two


def _listen_at_free_pair() -> tuple[socket.socket, int]:
    """A listener on some port p of 20000.. whose next port p + 1 is free too."""
    for p in range(20000, 29990, 7):
        busy = socket.socket()
        try:
            busy.bind(("", p))
            with socket.socket() as probe:
                probe.bind(("", p + 1))
        except OSError:
            busy.close()
            continue
        busy.listen()
        return busy, p
    raise AssertionError("no free pair of ports in 20000-29999")


def test_instance_ports_come_from_the_range_and_skip_taken_and_busy_ones() -> None:
    busy, p = _listen_at_free_pair()
    with busy:
        # the range p-1 .. p+1: p-1 belongs to an instance, p has another listener, p+1 is free
        assert {instance_port({p - 1}, p - 1, p + 1) for _ in range(30)} == {p + 1}
        fallback = instance_port({p - 1}, p - 1, p, tries=5)  # none free: an ephemeral port
        assert fallback not in (p - 1, p) and fallback > 30000
    assert 20000 <= instance_port(set(), 20000, 29999) <= 29999


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(b"", "closed the connection without a response"), (b"hello there\r\n", "not an HTTP response: b'hello there'")],
)
def test_http_check_names_what_is_not_http(answer: bytes, reason: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(answer)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        p = check_http(listener.getsockname()[1], "/health", "web.localhost")
        t.join(5)
    assert not p.ok and p.reason.startswith("/health failed: ") and reason in p.reason
