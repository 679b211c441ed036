"""keyvalue — Render's ``keyvalue`` (formerly ``redis``) entries: one real ``redis-server`` per entry,
started, supervised and adopted by slipstream, with a password, ``maxmemoryPolicy``, an optional
``maxmemory``, ``ipAllowList`` and AOF persistence in the state directory.

Modules: ``models`` (data, names, policies, plan sizes), ``resp`` (the wire protocol, pure),
``commands`` (pure ``redis.conf``/argv builders and parsers), ``client`` (the one socket),
``server`` (one server's lifecycle), ``manager`` (the :class:`KeyValueServers` facade the engine uses).
"""

from __future__ import annotations

from slipstream.keyvalue.manager import KeyValueServers
from slipstream.keyvalue.models import (
    DEFAULT_POLICY,
    PLAN_MEMORY_MB,
    POLICIES,
    KeyValueEvent,
    KeyValueInfo,
    ServerSpec,
    ServerStatus,
    plan_maxmemory_mb,
)
from slipstream.keyvalue.server import KeyValueServer

__all__ = [
    "DEFAULT_POLICY",
    "PLAN_MEMORY_MB",
    "POLICIES",
    "KeyValueEvent",
    "KeyValueInfo",
    "KeyValueServer",
    "KeyValueServers",
    "ServerSpec",
    "ServerStatus",
    "plan_maxmemory_mb",
]
