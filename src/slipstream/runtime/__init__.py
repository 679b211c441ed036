"""runtime: start, watch and stop app instances (``LocalDriver``), run one-off commands.

``base`` holds the protocol and data types, ``local`` the process driver, ``fake`` the in-memory
driver for tests, ``oneoff`` one-off commands (also used by builds).
"""

from __future__ import annotations

from slipstream.runtime.backoff import BackoffPolicy, plan_restart
from slipstream.runtime.base import Driver, EventCallback, InstanceSpec, InstanceState, InstanceStatus
from slipstream.runtime.fake import FakeDriver, FakeHost
from slipstream.runtime.local import LocalDriver
from slipstream.runtime.oneoff import run_command

__all__ = [
    "BackoffPolicy",
    "Driver",
    "EventCallback",
    "FakeDriver",
    "FakeHost",
    "InstanceSpec",
    "InstanceState",
    "InstanceStatus",
    "LocalDriver",
    "plan_restart",
    "run_command",
]
