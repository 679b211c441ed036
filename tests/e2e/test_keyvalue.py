"""Key value end to end: a real redis-server shared by a web service and a worker through
``fromService``, surviving ``kill -9`` of the daemon and a redeploy of both services."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Daemon, git
from tests.e2e.test_resilience import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]

# A tiny Redis client (RESP over a socket), so the apps need nothing installed.
KV = """\
import os, socket, urllib.parse

def kv(*args):
    url = urllib.parse.urlparse(os.environ["REDIS_URL"])
    with socket.create_connection((url.hostname, url.port), timeout=5) as s:
        def send(*a):
            s.sendall(b"*%d\\r\\n" % len(a) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(x), x) for x in (str(v).encode() for v in a)))
            f = s.makefile("rb")
            line = f.readline()
            if line[:1] == b"$":
                n = int(line[1:])
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if line[:1] == b"-":
                raise RuntimeError(line.decode().strip())
            return line[1:].decode().strip()
        send("AUTH", url.username or "default", url.password)
        return send(*args)
"""

WEB = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from kv import kv

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/set/"):
            kv("SET", "from-web", self.path[5:])
            body = "ok"
        elif self.path == "/worker":
            body = kv("GET", "from-worker") or ""
        elif self.path == "/url":
            body = os.environ["REDIS_URL"]
        else:
            body = "up"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

WORKER = """\
import time
from kv import kv
n = 0
while True:
    n += 1
    seen = kv("GET", "from-web")
    kv("SET", "from-worker", f"tick {n} saw {seen}")
    time.sleep(0.2)
"""

BLUEPRINT = """\
services:
  - type: keyvalue
    name: cache
    ipAllowList: []
    maxmemoryPolicy: noeviction
  - type: web
    name: front
    runtime: python
    buildCommand: echo ok
    startCommand: python web.py
    healthCheckPath: /health
    envVars:
      - key: REDIS_URL
        fromService: {type: keyvalue, name: cache, property: connectionString}
  - type: worker
    name: ticker
    runtime: python
    buildCommand: echo ok
    startCommand: python worker.py
    envVars:
      - key: REDIS_URL
        fromService: {type: keyvalue, name: cache, property: connectionString}
"""


def test_web_and_worker_share_a_key_value_that_survives_the_daemon(open_daemon: Daemon, open_root: Path) -> None:
    daemon = open_daemon
    repo = open_root / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in {"kv.py": KV, "web.py": WEB, "worker.py": WORKER, "render.yaml": BLUEPRINT}.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "shop")
    r = daemon.cli("apply", str(repo / "render.yaml"), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr

    # the web service writes, the worker reads it and writes back: both see each other
    assert daemon.get("front.localhost", "/set/hello") == (200, "ok")
    wait_until(lambda: "saw hello" in daemon.get("front.localhost", "/worker")[1], timeout=20)

    # the password never shows: not in the transcript, status or the kv listing
    url = daemon.get("front.localhost", "/url")[1]
    password = url.split(":")[2].split("@")[0]
    assert len(password) >= 16
    listing = daemon.cli("kv", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [r["name"] for r in rows] == ["cache"] and rows[0]["running"] is True
    shown = r.stdout + r.stderr + listing.stdout + daemon.cli("status", "--json").stdout
    assert password not in shown
    for f in daemon.home.glob("state.db*"):
        assert password.encode() not in f.read_bytes()

    # kill -9 the daemon: Redis keeps its pid and its data; the new daemon adopts it
    redis_pid = rows[0].get("pid") or int(next((daemon.home / "keyvalue" / "cache").glob("*.pid")).read_text().strip())
    os.kill(int((daemon.home / "run" / "daemon.pid").read_text()), signal.SIGKILL)
    time.sleep(0.3)
    assert "saw hello" in daemon.get("front.localhost", "/worker")[1]
    assert daemon.cli("up", "--detach").returncode == 0
    assert os.path.exists(f"/proc/{redis_pid}")

    # a redeploy of both services keeps the same server, password and data
    for service in ("front", "ticker"):
        r = daemon.cli("deploy", service, "--blueprint", str(repo / "render.yaml"), timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
    assert daemon.get("front.localhost", "/url")[1] == url
    assert daemon.get("front.localhost", "/set/again") == (200, "ok")
    wait_until(lambda: "saw again" in daemon.get("front.localhost", "/worker")[1], timeout=20)
    assert os.path.exists(f"/proc/{redis_pid}")
