"""The ports of the private-service listeners: chosen once per proxy directory, then kept.

A private service (Render's ``pserv``) is reached at ``127.0.0.1:<port>``, and that address must
survive deploys, daemon restarts and HAProxy restarts. So the K listener ports are picked the
first time a proxy directory is started (free loopback ports, or the operator's list) and
written to ``private.json``; listener ``i`` (``frontend priv_i`` -> ``backend pbe_i``) always has
``ports[i]``:

    {"ports": [40101, 40102, 40103, 40104, 40105, 40106, 40107, 40108]}

The file is only ever replaced whole (atomic rename). Raising the pool size keeps the existing
ports and adds new ones; lowering it keeps the first ones.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput
from slipstream.proxy import process
from slipstream.proxy.config import parse_layout
from slipstream.proxy.model import check_port
from slipstream.proxy.slots import write_atomic

DEFAULT_PRIVATE_POOL = 8  # TCP listeners: at most this many private services


def check_ports(ports: Sequence[int], count: int, http_port: int) -> list[int]:
    """Return ``ports`` if they are ``count`` distinct TCP ports other than ``http_port``."""
    ports = list(ports)
    for port in ports:
        check_port(port, "private service port")
    if len(ports) != count:
        raise InvalidInput(
            f"{len(ports)} private service ports given for a pool of {count} listeners",
            "give one port per listener, or change the pool size",
        )
    if len(set(ports)) != len(ports):
        raise InvalidInput(f"private service ports {', '.join(map(str, ports))} repeat a port")
    if http_port in ports:
        raise InvalidInput(
            f"private service port {http_port} is also the HTTP port", "choose private ports other than the HTTP port"
        )
    return ports


def load_ports(path: Path) -> list[int] | None:
    """The ports recorded in ``path``, or None if it is missing or unreadable."""
    try:
        ports = json.loads(path.read_text())["ports"]
        return [check_port(p) for p in ports] if isinstance(ports, list) else None
    except (OSError, ValueError, KeyError, TypeError, InvalidInput):
        return None


def save_ports(path: Path, ports: Sequence[int]) -> None:
    """Replace ``path`` atomically with ``ports``."""
    write_atomic(path, json.dumps({"ports": list(ports)}) + "\n")


def ports_in_config(text: str) -> list[int] | None:
    """The listener ports a rendered ``haproxy.cfg`` binds, in listener order (None if none)."""
    binds = sorted(
        (name, addrs) for name, addrs in parse_layout(text).items() if name.startswith("frontend priv_") and addrs
    )  # names share one width
    return [int(addrs[0].rsplit(":", 1)[1]) for _, addrs in binds] or None


def find_free_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """``count`` distinct loopback ports nobody listens on now (none of ``avoid``)."""
    avoid = set(avoid)
    found: list[int] = []
    with ExitStack() as held:  # keep each socket open so the kernel hands out distinct ports
        for _ in range(count + len(avoid) + 16):
            if len(found) == count:
                break
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in avoid:
                found.append(port)
    if len(found) != count:
        raise Conflict(
            f"found only {len(found)} of {count} free loopback ports for private services",
            "free some ports, or give the private ports explicitly",
        )
    return found


def extend_ports(saved: Sequence[int], count: int, avoid: Iterable[int] = ()) -> list[int]:
    """Keep the first ``count`` of ``saved`` and add free ports up to ``count``."""
    kept = list(saved)[:count]
    return kept + find_free_ports(count - len(kept), [*kept, *avoid])


def check_free(ports: Sequence[int], owners: Mapping[int, str], private_file: Path) -> None:
    """Raise :class:`Conflict` if another program listens on one of the listener ``ports``."""
    for port in ports:
        try:
            process.check_port_free("127.0.0.1", port)
        except Conflict:
            owner = owners.get(port)
            whose = f"the address of private service {owner}" if owner else "a private listener"
            raise Conflict(
                f"port 127.0.0.1:{port} ({whose}) is in use by another program",
                f"stop that program; or delete {private_file} to pick new ports (private services then move)",
            ) from None
