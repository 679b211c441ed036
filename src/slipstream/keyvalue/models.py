"""Data of the keyvalue part: what a server looks like to apps and to the engine, and the naming,
policy and plan rules of Render's ``keyvalue`` entries.

Everything here is plain data plus validation; nothing touches a process or a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from slipstream.errors import InvalidInput

HOST = "127.0.0.1"  # where apps connect (extra listen addresses only ever add to it)
APP_USER = "default"  # the Redis user apps log in as (Render's URL names it too)
ADMIN_USER = "slipstream"  # slipstream's own Redis user: CONFIG SET, ACL SETUSER
NAME_MAX = 63

# Render's eviction policies (``maxmemoryPolicy``) and its default for a new instance.
POLICIES = (
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "noeviction",
)
DEFAULT_POLICY = "allkeys-lru"

# Memory per Key Value instance type, in MB (Render's published sizes; the engine may pass its own).
PLAN_MEMORY_MB = {
    "free": 25,
    "starter": 256,
    "standard": 1024,
    "pro": 5120,
    "pro plus": 10240,
    "pro_plus": 10240,
}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

Action = Literal["adopted", "started", "restarted", "reconfigured", "failed", "stopped"]


@dataclass(frozen=True)
class KeyValueInfo:
    """One blueprint ``keyvalue`` entry: where it listens and how an app logs in."""

    name: str
    host: str
    port: int
    password: str = field(repr=False)

    def connection_string(self) -> str:
        """The URL an app gets: ``redis://default:PASSWORD@127.0.0.1:PORT``.

        Render's internal URL (``redis://red-xxx:6379``) carries no password because its private
        network is the fence; here every server requires one, so the URL always names it.
        """
        return f"redis://{APP_USER}:{quote(self.password, safe='')}@{self.hostport()}"

    def hostport(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def properties(self) -> dict[str, str]:
        """The values a blueprint's ``fromService`` with ``type: keyvalue`` can name."""
        return {
            "connectionString": self.connection_string(),
            "host": self.host,
            "port": str(self.port),
            "hostport": self.hostport(),
        }


@dataclass(frozen=True)
class ServerSpec:
    """What a server should look like: the settings the engine asks for (all changeable later)."""

    policy: str = DEFAULT_POLICY
    maxmemory_mb: int | None = None  # None: no limit (Redis' own default)
    bind: tuple[str, ...] = (HOST,)


@dataclass(frozen=True)
class ServerStatus:
    """The parts of ``INFO`` the engine shows or acts on."""

    version: str
    pid: int
    port: int
    uptime_s: int
    used_memory: int
    maxmemory: int
    policy: str
    aof_enabled: bool
    aof_last_write_ok: bool
    aof_pending_bytes: int  # acknowledged writes not yet in the AOF file (lost if the server dies now)
    connected_clients: int
    loading: bool


@dataclass(frozen=True)
class KeyValueEvent:
    """Something :class:`~slipstream.keyvalue.manager.KeyValueServers` did to a server, for the log."""

    name: str
    action: Action
    detail: str


def check_name(name: str) -> str:
    """Return ``name`` if it can name a server (and its directory), else raise InvalidInput."""
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"keyvalue name {name!r} cannot name a server",
            f"use letters, digits, '.', '_' and '-', starting with a letter or digit, at most {NAME_MAX} characters",
        )
    return name


def check_policy(policy: str) -> str:
    """Return ``policy`` if it is one of Render's ``maxmemoryPolicy`` values, else raise InvalidInput."""
    if policy not in POLICIES:
        raise InvalidInput(f"unknown maxmemoryPolicy {policy!r}", f"use one of {', '.join(POLICIES)}")
    return policy


def check_maxmemory(maxmemory_mb: int | None) -> int | None:
    """Return ``maxmemory_mb`` if it is None or a positive whole number of MB, else raise InvalidInput."""
    if maxmemory_mb is not None and (isinstance(maxmemory_mb, bool) or maxmemory_mb < 1):
        raise InvalidInput(f"maxmemory {maxmemory_mb!r} MB is not a positive size", "give at least 1 MB, or none")
    return maxmemory_mb


def plan_maxmemory_mb(plan: str | None) -> int:
    """The memory of a Key Value instance type (``free`` -> 25); Render's default type is ``starter``."""
    key = (plan or "starter").lower()
    if key not in PLAN_MEMORY_MB:
        raise InvalidInput(f"unknown Key Value plan {plan!r}", f"use one of {', '.join(sorted(PLAN_MEMORY_MB))}")
    return PLAN_MEMORY_MB[key]
