"""A standalone loop for the request a crashing release may lose right after the flip (issue 15).

No daemon: a real HAProxy driven through :class:`slipstream.proxy.Proxy` with slipstream's config,
the old release (``bench/upstream.py``) in its slot, and ``keep-alive`` client threads. Per flip: a
new ``upstream.py`` that exits (code 3) 0.1-0.6 s after its first request, the flip as the deployer
does it (new ready, old drained and in a backup slot), the crash, then the move back as the settle
window does it. At the end: flips with a failed request, the failures, the HAProxy access lines of
requests not ended normally, and how many retries the requests used (``%rc``, ``+`` redispatched).

    PYTHONPATH=src python bench/crash_race.py 100

Measured (HAProxy 2.6.12, 4 clients, a shared 2-core machine): with ``retries 3``, 7 failed
requests in 500 flips (each a 503 ``SC`` on the dead server after 3 retries, seen by the client as
``RemoteDisconnected``); with ``retries 10``, none in 500 flips, at most 5 retries used.
"""

from __future__ import annotations

import collections
import http.client
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import slipstream.proxy.config as proxy_config
from slipstream.logs.access import ACCESS_LOG_FORMAT
from slipstream.proxy import Proxy

UPSTREAM = Path(__file__).with_name("upstream.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_app(app_id: str, crash_after: float | None = None) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "APP_ID": app_id}
    if crash_after is not None:
        env["CRASH_AFTER_FIRST_REQUEST_S"] = f"{crash_after:.3f}"
    proc = subprocess.Popen([sys.executable, str(UPSTREAM)], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return port, proc
        time.sleep(0.01)
    proc.kill()
    raise SystemExit(f"upstream.py did not listen on port {port} within 10 s")


class Load:
    """Client threads, each one keep-alive connection at a time, GET / in a loop."""

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/", headers={"Host": "web.localhost"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(type(e).__name__)
                conn.close()
                conn = None
                continue
            if resp.status == 200:
                self.ok += 1
            else:
                self.failures.append(f"status {resp.status}")

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)


def _collect(sock: socket.socket, lines: list[str]) -> None:
    while True:
        lines.append(sock.recv(65536).decode(errors="replace"))


def main() -> None:
    flips = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    proxy_config.ACCESS_LOG_FORMAT = ACCESS_LOG_FORMAT + " rc=%rc"  # type: ignore[misc]
    work = Path(tempfile.mkdtemp(prefix="crash-race-"))
    log_path = work / "access.sock"
    log_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log_sock.bind(str(log_path))
    lines: list[str] = []
    threading.Thread(target=_collect, args=(log_sock, lines), daemon=True).start()
    port = free_port()
    proxy = Proxy(work / "proxy", port, pool_size=1, access_log=log_path)
    proxy.start()
    old_port, old = start_app("old")
    try:
        proxy.set_route("web", ["web.localhost"])
        proxy.add_server("web", "d1-1", old_port)
        proxy.set_state("web", "d1-1", "ready")
        load = Load(port, threads)
        bad_flips = 0
        for i in range(flips):
            before = len(load.failures)
            name = f"d{i + 2}-1"
            new_port, new = start_app("new", crash_after=random.uniform(0.1, 0.6))
            proxy.add_server("web", name, new_port)
            proxy.switch("web", ready=[name], drain=["d1-1"], fallback=["d1-1"])
            new.wait(timeout=30)
            time.sleep(random.uniform(0.05, 0.3))  # the supervisor sees the exit, the settle window moves back
            proxy.switch("web", ready=["d1-1"], drain=[name])
            proxy.release_fallback("web")
            proxy.remove_server("web", name, timeout=2)
            time.sleep(0.1)
            bad_flips += len(load.failures) > before
        load.close()
    finally:
        old.kill()
        proxy.stop(grace=1)
    print(f"flips {flips}, flips with a failed request {bad_flips}, requests ok {load.ok}, failed {len(load.failures)}")
    print("failures:", dict(collections.Counter(load.failures)))
    for line in lines:
        if " fl=--" not in line:
            print(line.strip())
    retries = collections.Counter(m.group(1) for line in lines if (m := re.search(r" rc=(\S+)", line)))
    print("retries per request:", dict(sorted(retries.items())))


if __name__ == "__main__":
    main()
