"""The nginx baseline: a pure config renderer and a small driver (start, point at, reload, stop).

The config mirrors the anchors in shared/reference/proxy-measurements.md: ``worker_processes
auto``, upstream keep-alive (``keepalive 64`` with HTTP/1.1 and an empty Connection header),
access log off, loopback listener; it sets X-Forwarded-For and X-Forwarded-Proto as slipstream's
HAProxy does, so both proxies do the same work per request. The upstream address lives in an included file, so a flip is
"rewrite that file atomically, then ``nginx -s reload``" -- the usual nginx way.

Lifecycle: ``start()`` runs the master in the foreground of its own session (``daemon off``) with
every path under ``prefix``; ``point_to(port)`` + ``reload()`` flips; ``stop()`` sends SIGQUIT
(graceful) and SIGKILLs the group after a bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench import procs


def render_nginx_conf(prefix: Path, port: int, upstream_include: Path) -> str:
    """nginx.conf for a keep-alive reverse proxy on 127.0.0.1:``port``."""
    temp = prefix / "temp"
    return f"""\
# Rendered by bench/nginx.py: the nginx baseline of `make bench`.
worker_processes auto;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    upstream app {{
        include {upstream_include};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # the same two headers slipstream's HAProxy sets (a client's own are replaced)
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def render_upstream(port: int) -> str:
    """The included upstream block body: one loopback server."""
    return f"server 127.0.0.1:{port};\n"


class Nginx:
    """One nginx master under ``prefix`` listening on ``port``."""

    def __init__(self, prefix: Path, port: int, upstream_port: int) -> None:
        self.prefix = prefix
        self.port = port
        self.conf = prefix / "nginx.conf"
        self.include = prefix / "upstream.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "temp").mkdir(exist_ok=True)
        self.point_to(upstream_port)
        self.conf.write_text(render_nginx_conf(prefix, port, self.include))

    def _argv(self) -> list[str]:
        return ["nginx", "-p", str(self.prefix), "-c", str(self.conf), "-e", str(self.prefix / "error.log")]

    def start(self) -> None:
        """Start the master and wait until the port answers through it."""
        self.proc = procs.spawn([*self._argv(), "-g", "daemon off;"], self.prefix / "stdout.log")
        procs.wait_for(lambda: procs.get(self.port)[0] == 200, 10, 0.02, "nginx answering")

    def point_to(self, upstream_port: int) -> None:
        """Rewrite the upstream file atomically (takes effect at the next reload)."""
        tmp = self.include.with_name(self.include.name + ".tmp")
        tmp.write_text(render_upstream(upstream_port))
        os.replace(tmp, self.include)

    def reload(self) -> None:
        """``nginx -s reload``: new workers with the new upstream; old ones finish and exit."""
        subprocess.run([*self._argv(), "-s", "reload"], check=True, capture_output=True, timeout=10)

    def workers(self) -> int:
        """How many nginx processes (master and workers, old and new) are alive in the group."""
        if self.proc is None:
            return 0
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        return len(out.stdout.split())

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until old workers from earlier reloads have exited (bounded)."""
        deadline = time.monotonic() + timeout
        want = 1 + (os.cpu_count() or 1)
        while self.workers() > want and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        """Graceful stop (SIGQUIT), then SIGKILL the group after a bound."""
        if self.proc is not None:
            procs.stop(self.proc, grace=5, sig=signal.SIGQUIT)
            self.proc = None
