"""Group membership helpers the runtime's stop relies on (runtime/process.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from slipstream.runtime.process import descendants, is_live_member, live_group_members
from tests.polling import wait_for


def test_descendants_and_members_of_a_group(tmp_path: Path) -> None:
    script = "sleep 60 & echo $! > child.pid; sh -c 'sleep 60 & echo $! > grandchild.pid; wait' & wait"
    leader = subprocess.Popen(["/bin/sh", "-c", script], cwd=tmp_path, start_new_session=True)
    try:
        pid_of = lambda name: int(wait_for(lambda: (tmp_path / name).exists() and (tmp_path / name).read_text()))  # noqa: E731
        child, grandchild = pid_of("child.pid"), pid_of("grandchild.pid")
        found = descendants(leader.pid)
        assert child in found and grandchild in found and leader.pid not in found
        assert set(found) | {leader.pid} == set(live_group_members(leader.pid))
        assert is_live_member(grandchild, leader.pid) and not is_live_member(grandchild, os.getpgrp())
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
    wait_for(lambda: not live_group_members(leader.pid), what="the group to end")
    assert descendants(leader.pid) == [] and not is_live_member(child, leader.pid)
