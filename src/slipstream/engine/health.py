"""Health checks: one probe answers pass/fail with the reason a person needs to fix it."""

from __future__ import annotations

import http.client
import logging
import random
import socket
from collections.abc import Collection
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """The outcome of one check: ``ok`` and, when not ok, why (refused / status N / timeout)."""

    ok: bool
    reason: str


def check_http(port: int, path: str, host: str, timeout: float = 5.0) -> Probe:
    """GET ``path`` on 127.0.0.1:``port`` with ``Host: host``; 2xx and 3xx pass (as on Render).

    Only the status line is read, over a plain socket: the live checks probe every instance every
    few seconds, and http.client's header parsing cost 2.5x the CPU of the whole probe here."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slipstream-health\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
    except ConnectionRefusedError:
        return Probe(False, f"connection refused on port {port} (is the app listening on $PORT?)")
    except TimeoutError:
        return Probe(False, f"{path} did not answer within {timeout:g} s")
    except OSError as exc:
        return Probe(False, f"{path} failed: {exc.__class__.__name__}: {exc}")
    if not head:
        return Probe(False, f"{path} failed: the app closed the connection without a response")
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return Probe(False, f"{path} failed: not an HTTP response: {line[:80]!r}")
    status = int(parts[1])
    if 200 <= status < 400:
        return Probe(True, f"status {status}")
    return Probe(False, f"{path} answered status {status}")


def check_smoke(port: int, path: str, host: str, status: int, contains: str | None, timeout: float) -> Probe:
    """A smoke check: GET ``path`` must answer exactly ``status`` (and hold ``contains``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "slipstream-smoke", "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(1 << 20).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return Probe(False, f"GET {path} failed: {exc.__class__.__name__}: {exc}")
    finally:
        conn.close()
    if resp.status != status:
        return Probe(False, f"GET {path} answered {resp.status}, not {status}")
    if contains is not None and contains not in body:
        return Probe(False, f"GET {path} answered without {contains!r} in its body")
    return Probe(True, f"GET {path} answered {status}")


def check_tcp(port: int, timeout: float = 5.0) -> Probe:
    """Pass when 127.0.0.1:``port`` accepts a TCP connection (Render's port detection)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return Probe(True, "port open")
    except ConnectionRefusedError:
        return Probe(False, f"no open port: nothing listens on port {port} (bind to $PORT)")
    except OSError as exc:
        return Probe(False, f"port {port}: {exc}")


def instance_port(taken: Collection[int], low: int, high: int, tries: int = 64) -> int:
    """A port for a new instance: from ``low..high`` (by default outside the kernel's ephemeral
    range, where an outgoing connection could take an instance's port while it waits to restart),
    used by no other instance, and free right now for a listener on any address. Falls back to an
    ephemeral free port (logged) when ``tries`` picks find none."""
    for _ in range(tries):
        port = random.randint(low, high)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        return port
    log.warning("no free instance port in %s-%s after %s tries; using an ephemeral one", low, high, tries)
    return free_port()


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
