"""Crash restart back-off: the first crash restarts at once, then 1 s doubling to 300 s; the count
is forgotten after 10 minutes of running.

The shape follows Kubernetes' CrashLoopBackOff (an immediate first restart, then doubling, a 5 min
cap, reset after 10 min up); it never gives up, unlike supervisord's FATAL or systemd's start
limit. (Issue 15 changed the first delay from 1 s to none: one crash costs a restart, not a second.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """How long to wait before restarting a crashed instance."""

    initial: float = 1.0
    maximum: float = 300.0
    reset_after: float = 600.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.reset_after < 0:
            raise ValueError(
                f"invalid back-off {self.initial}/{self.maximum}/{self.reset_after}: "
                "need 0 < initial <= maximum and reset_after >= 0"
            )


@dataclass(frozen=True)
class RestartPlan:
    """The decision after a crash: which crash in a row this is and how long to wait."""

    crashes_in_row: int
    delay_s: float


def plan_restart(policy: BackoffPolicy, crashes_in_row: int, ran_for_s: float) -> RestartPlan:
    """Count this crash (after a long enough run the count starts over) and pick the delay: none for
    the first crash in a row, then ``initial`` doubling up to ``maximum``."""
    count = 1 if ran_for_s >= policy.reset_after else crashes_in_row + 1
    if count == 1:
        return RestartPlan(1, 0.0)
    # 2 ** n overflows to inf for huge n; the cap makes that harmless, but keep the exponent sane.
    delay = min(policy.maximum, policy.initial * 2.0 ** min(count - 2, 64))
    return RestartPlan(count, delay)


def render_delay(seconds: float) -> str:
    """A delay as people read it: 'now', '4 s', '0.1 s', '5 min'."""
    if seconds <= 0:
        return "now"
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:.0f} s"


def render_restart(delay_s: float) -> str:
    """When a crashed instance starts again: 'restarting now' or 'restarting in 4 s'."""
    return "restarting now" if delay_s <= 0 else f"restarting in {render_delay(delay_s)}"
