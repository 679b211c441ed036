from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slipstream.engine.health import check_http, check_tcp, free_port
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
