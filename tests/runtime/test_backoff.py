"""Crash back-off: the pure policy, and the LocalDriver following it on a fake clock."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from slipstream.runtime import BackoffPolicy, InstanceSpec, InstanceState, LocalDriver, plan_restart
from slipstream.runtime.backoff import render_delay
from tests.polling import wait_for

DEFAULT = BackoffPolicy()


def test_the_first_crash_restarts_at_once_then_delays_double_from_one_second_to_five_minutes() -> None:
    crashes, delays = 0, []
    for _ in range(12):
        plan = plan_restart(DEFAULT, crashes, ran_for_s=0.5)
        crashes = plan.crashes_in_row
        delays.append(plan.delay_s)
    assert delays == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert crashes == 12


@pytest.mark.parametrize(
    ("crashes", "ran_for", "expected"),
    [
        (9, 599.9, (10, 256)),  # not up long enough: keeps climbing
        (10, 599.9, (11, 300)),  # (capped)
        (9, 600.0, (1, 0)),  # ten minutes up: forgotten, restarted at once
        (3, 3600.0, (1, 0)),
        (0, 0.0, (1, 0)),
        (10_000, 0.0, (10_001, 300)),  # no overflow however long it loops
    ],
)
def test_reset_after_ten_minutes_of_running(crashes: int, ran_for: float, expected: tuple[int, float]) -> None:
    plan = plan_restart(DEFAULT, crashes, ran_for)
    assert (plan.crashes_in_row, plan.delay_s) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "now"), (1, "1 s"), (0.1, "0.1 s"), (4, "4 s"), (64, "64 s"), (300, "5 min"), (256, "256 s")],
)
def test_render_delay(seconds: float, text: str) -> None:
    assert render_delay(seconds) == text


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid back-off"):
        BackoffPolicy(initial=0)
    with pytest.raises(ValueError):
        BackoffPolicy(initial=10, maximum=5)


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_driver_follows_the_backoff_sequence_on_a_fake_clock(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    clock = FakeClock()
    driver = drivers(clock=clock, backoff_initial=1.0, backoff_max=300.0, backoff_reset_after=600.0)
    (tmp_path / "crash").touch()
    spec = make_spec("if [ -f crash ]; then exit 1; fi; exec sleep 60")
    driver.start(spec)

    seen = []  # the first crash restarts at once (restart 1); from the second on, back-off
    for n, expected in enumerate([1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]):
        st = wait_for(
            lambda: (
                (s := driver.inspect(spec.instance_id)).state is InstanceState.BACKOFF and s.restarts == n + 1 and s
            ),
            what=f"crash {n + 2}",
        )
        seen.append(st.next_restart_in_s)  # type: ignore[union-attr]
        assert st.last_event == f"exited with code 1; restarting in {render_delay(expected)}"  # type: ignore[union-attr]
        if n == 10:
            break
        clock.advance(expected - 0.5)  # not yet: still waiting
        assert driver.inspect(spec.instance_id).next_restart_in_s == pytest.approx(0.5)
        assert driver.inspect(spec.instance_id).state is InstanceState.BACKOFF
        clock.advance(0.5)
    assert seen == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]

    (tmp_path / "crash").unlink()  # the next start stays up
    clock.advance(300)
    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).state is InstanceState.RUNNING and s.pid and s,
        what="a run that stays up",
    )
    clock.advance(600)  # ten minutes up: the count is forgotten
    restarts = st.restarts  # type: ignore[union-attr]
    os.kill(st.pid, signal.SIGKILL)  # type: ignore[union-attr, arg-type]
    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).restarts == restarts + 1 and s,
        what="the crash after a long run, restarted at once",
    )
    assert st.state is InstanceState.RUNNING  # type: ignore[union-attr]
