"""Failpoints: named places in a deploy where the chaos suite kills the daemon with SIGKILL.

``SLIPSTREAM_FAILPOINTS`` (comma-separated names from :data:`ALL`) arms points for one daemon
process; the daemon calls :func:`arm` once at start. ``hit(name)`` at an armed point writes one line
to stderr (the daemon log) and sends the daemon SIGKILL: no cleanup, no flush, as a power cut or an
OOM kill would. Unarmed, ``hit`` is a lookup in an empty frozenset. tests/e2e/test_chaos.py runs every
point; tests/core/test_failpoints.py checks each name is placed in the engine.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable

AFTER_BUILD = "deploy.after_build"  # the build is done, nothing started
PRE_DEPLOY = "deploy.pre_deploy"  # the preDeployCommand is running (its first output line)
REUSE_BUILD = "deploy.reuse_build"  # a rollback picked its earlier build
AFTER_START = "deploy.after_start"  # new instances started, their servers added (not ready)
HEALTH = "deploy.health"  # the health gate is waiting for the new instances
STAY_HEALTHY = "deploy.stay_healthy"  # healthy; the stability wait before the flip
BEFORE_FLIP = "deploy.before_flip"  # sealed and recorded as flipping, traffic not yet moved
AFTER_FLIP = "deploy.after_flip"  # traffic on the new instances, the old ones draining
SETTLE = "deploy.settle"  # the settle window after the flip (old instances still running)
MOVED_BACK = "deploy.moved_back"  # the settle window failed: traffic moved back to the old release
PROMOTED = "deploy.promoted"  # the deploy is recorded live, the old instances draining
DRAIN = "deploy.drain"  # the old instances are being stopped
CLEANUP = "deploy.cleanup"  # a failed deploy is about to stop its new instances

ALL = (
    AFTER_BUILD,
    PRE_DEPLOY,
    REUSE_BUILD,
    AFTER_START,
    HEALTH,
    STAY_HEALTHY,
    BEFORE_FLIP,
    AFTER_FLIP,
    SETTLE,
    MOVED_BACK,
    PROMOTED,
    DRAIN,
    CLEANUP,
)

_armed: frozenset[str] = frozenset()


def parse(raw: str) -> tuple[str, ...]:
    """The point names in ``raw`` (comma-separated); ValueError naming any unknown one."""
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise ValueError(f"unknown failpoint {', '.join(unknown)} (known: {', '.join(ALL)})")
    return names


def arm(names: Iterable[str]) -> None:
    """Arm ``names`` in this process (the daemon, once at start)."""
    global _armed
    _armed = frozenset(names)


def hit(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is armed; otherwise nothing."""
    if name in _armed:
        sys.stderr.write(f"failpoint {name}: kill -9 of daemon {os.getpid()}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
