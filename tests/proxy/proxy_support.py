"""Helpers for the proxy tests: free loopback ports, tiny HTTP and TCP upstreams, clients."""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ServerThread:
    """A socketserver on a free loopback port, served in a thread; ``connections`` counts the TCP
    connections it accepted."""

    connections = 0

    def _serve(
        self, server_class: type[socketserver.TCPServer], handler: type[socketserver.BaseRequestHandler]
    ) -> None:
        outer = self

        class Server(server_class):  # type: ignore[valid-type, misc]
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # HAProxy resets idle keep-alive connections when it stops

            def verify_request(self, request: object, client_address: object) -> bool:
                outer.connections += 1  # called once per accepted connection, in one thread
                return True

        self.server = Server(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Upstream(_ServerThread):
    """An HTTP/1.1 keep-alive server in a thread answering JSON: its id and the request headers.

    ``connections`` counts the TCP connections it accepted (to check the proxy reuses them).
    """

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5  # idle keep-alive connections end, so handler threads do not linger
            # headers and body are two writes: without TCP_NODELAY each response on a kept-alive
            # connection waits ~40 ms for the proxy's delayed ACK (real app servers set it too)
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if self.path.startswith("/slow"):
                    time.sleep(float(self.path.split("=", 1)[1]) if "=" in self.path else 0.5)
                body = json.dumps(
                    {
                        "id": outer.ident,
                        "host": self.headers.get("Host"),
                        "xff": self.headers.get("X-Forwarded-For"),
                        "proto": self.headers.get("X-Forwarded-Proto"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._serve(ThreadingHTTPServer, Handler)


def get(port: int, host: str, path: str = "/", timeout: float = 5) -> tuple[int, bytes]:
    """One GET through the proxy with ``host`` as Host header; returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class EchoUpstream(_ServerThread):
    """A plain TCP server in a thread (no HTTP): answers each line with ``<id> <line>``.

    Private services may speak any protocol; this one is line-based. ``connections`` counts the
    TCP connections it accepted.
    """

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self.connections = 0
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 5  # an idle connection ends, so threads do not linger
            disable_nagle_algorithm = True

            def handle(self) -> None:
                try:
                    for line in self.rfile:  # until the client closes
                        self.wfile.write(outer.ident.encode() + b" " + line)
                except OSError:
                    pass  # a reset or the idle timeout

        self._serve(socketserver.ThreadingTCPServer, Handler)


class EchoClient:
    """One TCP connection to ``127.0.0.1:port`` sending lines and reading the echoed answers."""

    def __init__(self, port: int, timeout: float = 5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def ask(self, text: str) -> str:
        """Send one line; return the answer line ("" if the connection closed)."""
        self.sock.sendall(text.encode() + b"\n")
        return self.reader.readline().decode().rstrip("\n")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def echo(port: int, text: str = "ping", timeout: float = 5) -> str:
    """One short TCP conversation: connect, send ``text``, return the answer, close."""
    client = EchoClient(port, timeout)
    try:
        return client.ask(text)
    finally:
        client.close()


class KeepAliveLoad:
    """Clients in threads sending GETs over keep-alive connections until the block ends; counts
    the upstream ids of the answers (``seen``) and every failure (a non-200 or a socket error)."""

    def __init__(self, port: int, host: str, threads: int = 2, max_seconds: float = 30) -> None:
        self.port, self.host = port, host
        self.seen: dict[str, int] = {}
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]

    def __enter__(self) -> KeepAliveLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                body = resp.read()
                with self._lock:
                    if resp.status != 200:
                        self.failures.append(f"status {resp.status}")
                    else:
                        ident = str(json.loads(body)["id"])
                        self.seen[ident] = self.seen.get(ident, 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.close()
