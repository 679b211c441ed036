"""Waiting in tests: poll a condition until it holds, or fail the test saying what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", every: float = 0.02) -> T:
    """Call ``predicate`` every ``every`` s until it returns something truthy (returned); fail the
    test after ``timeout`` s (a bound for a broken run, not a speed check: a passing test returns
    as soon as the condition holds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
