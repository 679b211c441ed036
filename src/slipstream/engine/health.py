"""Health checks: one probe answers pass/fail with the reason a person needs to fix it."""

from __future__ import annotations

import errno
import http.client
import logging
import os
import random
import selectors
import socket
import time
from collections import deque
from collections.abc import Collection, Sequence
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
    request = _request(path, host)
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
    return _verdict(path, head)


def _request(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slipstream-health\r\nConnection: close\r\n\r\n".encode()


def _verdict(path: str, head: bytes) -> Probe:
    """Pass or fail from the start of an HTTP answer (its status line): 2xx and 3xx pass."""
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


@dataclass(frozen=True)
class Target:
    """What one check in a batch asks: GET ``path`` with ``Host: host`` on 127.0.0.1:``port``, or
    only a TCP connection when ``path`` is None."""

    port: int
    path: str | None = None
    host: str = ""


@dataclass
class _Check:
    index: int
    target: Target
    sock: socket.socket
    deadline: float
    out: bytes = b""  # the request still to send; empty once sent
    head: bytes = b""
    connected: bool = False


def probe_many(targets: Sequence[Target], timeout: float = 5.0, parallel: int = 64) -> list[Probe]:
    """Check every target from this one thread, at most ``parallel`` at a time, each within
    ``timeout``: non-blocking sockets on one selector, with the verdicts and reasons of
    :func:`check_http` and :func:`check_tcp`. The live checks of 200 instances took a thread 200
    blocking probes in a row (one hanging app held up all the others by its timeout) and cost
    about twice the CPU per probe (a socket timeout adds a poll before every call)."""
    results: list[Probe | None] = [None] * len(targets)
    pending = deque(range(len(targets)))
    sel = selectors.DefaultSelector()
    try:
        while pending or sel.get_map():
            while pending and len(sel.get_map()) < parallel:
                i = pending.popleft()
                _begin(sel, i, targets[i], time.monotonic() + timeout, results)
            checks: list[_Check] = [key.data for key in sel.get_map().values()]
            if not checks:
                continue
            wait = max(0.0, min(c.deadline for c in checks) - time.monotonic())
            for key, _ in sel.select(wait):
                _advance(sel, key.data, results)
            now = time.monotonic()
            for c in checks:
                if results[c.index] is None and c.deadline <= now:
                    _done(sel, c, _late(c.target, timeout), results)
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()
    return [r if r is not None else Probe(False, "not checked") for r in results]


def _begin(sel: selectors.BaseSelector, i: int, t: Target, deadline: float, results: list[Probe | None]) -> None:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:  # out of file descriptors: this check fails, as check_http's would
        results[i] = _failed(t, exc)
        return
    sock.setblocking(False)
    check = _Check(i, t, sock, deadline, _request(t.path, t.host) if t.path is not None else b"")
    err = sock.connect_ex(("127.0.0.1", t.port))
    if err not in (0, errno.EINPROGRESS):
        sock.close()
        results[i] = _failed(t, OSError(err, os.strerror(err)))
        return
    sel.register(sock, selectors.EVENT_WRITE, check)


def _advance(sel: selectors.BaseSelector, c: _Check, results: list[Probe | None]) -> None:
    """One step of a check its socket is ready for: connected, request sent, answer read."""
    t = c.target
    try:
        if not c.connected:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))  # the errno's own subclass (ConnectionRefusedError, ...)
            c.connected = True
            if t.path is None:
                _done(sel, c, Probe(True, "port open"), results)
                return
        if c.out:
            c.out = c.out[c.sock.send(c.out) :]
            if not c.out:
                sel.modify(c.sock, selectors.EVENT_READ, c)
            return
        chunk = c.sock.recv(4096)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        _done(sel, c, _failed(t, exc), results)
        return
    c.head += chunk
    if not chunk or b"\r\n" in c.head or len(c.head) >= 65536:
        _done(sel, c, _verdict(t.path or "/", c.head), results)


def _done(sel: selectors.BaseSelector, c: _Check, probe: Probe, results: list[Probe | None]) -> None:
    results[c.index] = probe
    sel.unregister(c.sock)
    c.sock.close()


def _late(t: Target, timeout: float) -> Probe:
    if t.path is None:
        return Probe(False, f"port {t.port}: timed out")
    return Probe(False, f"{t.path} did not answer within {timeout:g} s")


def _failed(t: Target, exc: OSError) -> Probe:
    """The reason a check failed on a socket error, worded as check_http and check_tcp word it."""
    if t.path is None:
        if isinstance(exc, ConnectionRefusedError):
            return Probe(False, f"no open port: nothing listens on port {t.port} (bind to $PORT)")
        return Probe(False, f"port {t.port}: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return Probe(False, f"connection refused on port {t.port} (is the app listening on $PORT?)")
    return Probe(False, f"{t.path} failed: {exc.__class__.__name__}: {exc}")


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
