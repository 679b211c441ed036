"""An instance's port stays its own: held while it waits to restart, and checked before it is routed.

While a crashed instance waits in back-off, the driver keeps its port with ``hold_port``: a
listening socket with ``SO_REUSEADDR`` (so it binds even while old connections linger in TIME_WAIT)
on 127.0.0.1, where HAProxy sends the instance's traffic. That makes any other bind there fail,
loopback or wildcard, IPv4 or dual-stack IPv6, with or without ``SO_REUSEADDR`` (checked on this
machine; a bound socket that does not listen stops only binds without ``SO_REUSEADDR``, and most
servers set it), and exposes nothing beyond loopback. The hold is closed just before the instance
starts again, so the app binds as before. It never accepts: a stray connection waits in its
backlog and is reset when the hold closes.

In the moment between the hold closing and the app binding, another process could still take the
port; ``foreign_listeners`` says which processes outside the instance's own process tree listen on
it, so the engine routes an instance only once the listener is its own.
"""

from __future__ import annotations

import logging
import socket

import psutil

log = logging.getLogger("slipstream.runtime")


def hold_port(port: int) -> socket.socket | None:
    """A socket that keeps ``port`` from every other process until it is closed; None when the port
    is already taken (or cannot be bound)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.set_inheritable(False)
        sock.bind(("127.0.0.1", port))
        sock.listen(0)
    except OSError as exc:
        sock.close()
        log.debug("cannot hold port %d: %s", port, exc)
        return None
    return sock


def release_port(sock: socket.socket | None) -> None:
    """Give a held port back."""
    if sock is not None:
        sock.close()


def listeners(port: int) -> set[int] | None:
    """The pids listening on TCP ``port`` (any address), or None when this process may not see them."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    return {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}


def foreign_listeners(port: int, root_pid: int) -> list[int]:
    """The pids listening on ``port`` that are neither ``root_pid`` nor one of its descendants
    (empty when none is, or when the listeners cannot be seen)."""
    found = listeners(port)
    if not found:
        return []
    try:
        root = psutil.Process(root_pid)
        own = {root_pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.NoSuchProcess:
        own = set()
    return sorted(found - own)


def describe_pid(pid: int) -> str:
    """``pid 123 (nc)`` for messages."""
    try:
        return f"pid {pid} ({psutil.Process(pid).name()})"
    except psutil.Error:
        return f"pid {pid}"
