"""LocalDriver against real processes (small sh and python scripts)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from slipstream.errors import Conflict, InvalidInput, NotFound
from slipstream.runtime import InstanceSpec, InstanceState, LocalDriver
from tests.polling import wait_for

from .conftest import Events, is_live

LONG = "exec sleep 60"


def read_pid(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text().strip(), what=f"{path.name}"))  # type: ignore[arg-type]


# -- start ---------------------------------------------------------------------------------------


def test_start_runs_command_with_exactly_the_given_env(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPSTREAM_TEST_LEAK", "leaked")
    spec = make_spec("env > env.txt; echo to-out; echo to-err >&2; " + LONG, port=12345, env={"GREETING": "hi"})
    spec.log_path.parent.mkdir(parents=True)
    spec.log_path.write_text("earlier line\n")

    status = driver.start(spec)

    assert status.state is InstanceState.RUNNING and status.pid
    assert status.create_time == psutil.Process(status.pid).create_time()
    env = dict(
        line.split("=", 1)
        for line in wait_for(
            lambda: (tmp_path / "env.txt").exists() and (tmp_path / "env.txt").read_text()
        ).splitlines()
    )  # type: ignore[union-attr]
    assert env["PORT"] == "12345" and env["GREETING"] == "hi"
    assert "SLIPSTREAM_TEST_LEAK" not in env
    wait_for(lambda: "to-err" in spec.log_path.read_text(), what="log output")
    assert spec.log_path.read_text().splitlines()[0] == "earlier line"  # appended, not truncated
    assert "to-out" in spec.log_path.read_text()
    assert os.getsid(status.pid) == status.pid != os.getsid(0)  # own session and group
    assert os.getpgid(status.pid) == status.pid


def test_start_refuses_duplicates_and_missing_directories(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    driver.start(make_spec(LONG))
    with pytest.raises(Conflict):
        driver.start(make_spec(LONG))
    spec = make_spec(LONG, instance_id="web-d1-2")
    missing = dataclasses.replace(spec, cwd=tmp_path / "nope")
    with pytest.raises(InvalidInput, match="does not exist"):
        driver.start(missing)
    with pytest.raises(NotFound):
        driver.inspect("web-d1-2")


def test_unknown_instances_raise_not_found(driver: LocalDriver) -> None:
    for call in (lambda: driver.inspect("x"), lambda: driver.stop("x"), lambda: driver.signal("x", 0)):
        with pytest.raises(NotFound):
            call()


# -- stop ----------------------------------------------------------------------------------------


def test_stop_sends_sigterm_and_forgets(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    events = Events()
    driver = drivers(on_event=events)
    spec = make_spec("trap 'echo got-term > term.txt; exit 0' TERM; touch ready; sleep 60 & wait")
    pid = driver.start(spec).pid
    assert pid
    wait_for(lambda: (tmp_path / "ready").exists(), what="the trap to be set")

    driver.stop(spec.instance_id, timeout=10)

    assert (tmp_path / "term.txt").read_text().strip() == "got-term"
    assert not is_live(pid)
    assert events.kinds() == ["started", "stopped"] and events.items[-1][2] == "stopped"
    with pytest.raises(NotFound):
        driver.inspect(spec.instance_id)
    assert driver.list() == []


def test_stop_kills_a_term_ignoring_app_after_the_delay(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    events = Events()
    driver = drivers(on_event=events)
    spec = make_spec("trap '' TERM; sleep 60", shutdown_delay_s=0.3)
    pid = driver.start(spec).pid
    assert pid
    wait_for(lambda: len(psutil.Process(pid).children()) == 1, what="the sleep child")

    driver.stop(spec.instance_id)  # default timeout: spec.shutdown_delay_s

    assert not is_live(pid)
    assert events.items[-1] == (spec.instance_id, "stopped", "stopped with SIGKILL after 0.3 s")


def test_stop_kills_the_whole_process_group(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    spec = make_spec("sleep 60 & echo $! > child.pid; sh -c 'sleep 60' & echo $! > grandchild.pid; wait")
    driver.start(spec)
    child, grandchild = read_pid(tmp_path / "child.pid"), read_pid(tmp_path / "grandchild.pid")
    assert is_live(child) and is_live(grandchild)

    driver.stop(spec.instance_id, timeout=5)

    assert not is_live(child) and not is_live(grandchild)


def test_stop_waits_for_a_member_that_outlives_the_leader(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    events = Events()
    driver = drivers(on_event=events)
    # the leader (sh) dies at SIGTERM; its child finishes its work for 0.4 s first, as an app drains
    child_script = "trap 'sleep 0.4; exit 0' TERM; touch trapped; while :; do sleep 0.05; done"
    spec = make_spec(f'sh -c "{child_script}" & echo $! > child.pid; wait', shutdown_delay_s=5)
    driver.start(spec)
    child = read_pid(tmp_path / "child.pid")
    wait_for(lambda: (tmp_path / "trapped").exists(), what="the child's trap")

    started = time.monotonic()
    driver.stop(spec.instance_id)

    assert not is_live(child)
    assert time.monotonic() - started >= 0.3
    assert events.items[-1] == (spec.instance_id, "stopped", "stopped")


def test_stop_of_a_crashed_instance_in_backoff_just_forgets_it(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    driver = drivers(backoff_initial=30, backoff_max=30)
    spec = make_spec("exit 2")
    driver.start(spec)
    wait_for(lambda: driver.inspect(spec.instance_id).state is InstanceState.BACKOFF, what="backoff")
    driver.stop(spec.instance_id)
    assert driver.list() == []


# -- crashes -------------------------------------------------------------------------------------


def test_crash_is_restarted_after_a_visible_backoff(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    events = Events()
    driver = drivers(on_event=events, backoff_initial=0.5, backoff_max=0.5)
    spec = make_spec("echo $PORT >> runs.txt; exit 3", port=23456)
    driver.start(spec)

    # the first crash restarts at once; the second waits in a visible back-off
    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).state is InstanceState.BACKOFF and s.restarts == 1 and s,
        what="backoff",
    )
    assert st.last_exit_code == 3 and st.pid is None  # type: ignore[union-attr]
    assert st.next_restart_in_s is not None and 0 <= st.next_restart_in_s <= 0.5  # type: ignore[union-attr]
    assert st.last_event == "exited with code 3; restarting in 0.5 s"  # type: ignore[union-attr]
    assert events.items[1][2] == "exited with code 3; restarting now"

    wait_for(lambda: driver.inspect(spec.instance_id).restarts >= 2, what="two restarts")
    assert events.kinds()[:5] == ["started", "exited", "restarted", "exited", "restarted"]
    runs = wait_for(lambda: len(r := (tmp_path / "runs.txt").read_text().split()) >= 3 and r, what="3 runs")
    assert set(runs) == {"23456"}  # type: ignore[arg-type]  # same spec, same port, every time


def test_kill_9_of_an_instance_restarts_it(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    spec = make_spec("echo $$ >> pids.txt; " + LONG)
    first = driver.start(spec)
    assert first.pid
    os.kill(first.pid, signal.SIGKILL)

    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).state is InstanceState.RUNNING and s.pid != first.pid and s,
        what="restart",
    )
    assert st.restarts == 1 and st.last_exit_code == 137  # type: ignore[union-attr]
    assert st.pid and is_live(st.pid)  # type: ignore[union-attr]
    assert not (
        psutil.pid_exists(first.pid)
        and psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
        and psutil.Process(first.pid).ppid() == os.getpid()
    ), "crashed child was not reaped"


def test_the_supervisor_sleeps_while_its_instances_are_healthy_and_wakes_for_a_death(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks: list[float] = []
    tick = driver._tick
    monkeypatch.setattr(driver, "_tick", lambda: (ticks.append(time.monotonic()), tick())[1])
    specs = [make_spec(LONG, instance_id=f"web-d1-{i}") for i in range(1, 11)]
    started = [driver.start(spec) for spec in specs]
    time.sleep(0.3)  # the wake-ups of the starts themselves
    before = len(ticks)
    time.sleep(1.0)  # 50 rounds of poll_interval (0.02 s) when the supervisor polled
    assert len(ticks) - before <= 1

    killed_at = time.monotonic()
    os.kill(started[3].pid, signal.SIGKILL)  # type: ignore[arg-type]
    wait_for(lambda: driver.inspect(specs[3].instance_id).restarts == 1, what="the restart")
    assert ticks[-1] - killed_at < 0.5  # its pidfd woke the supervisor


def test_a_crash_kills_what_the_instance_left_behind(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    spec = make_spec("if [ ! -f child.pid ]; then sleep 60 & echo $! > child.pid; exit 1; fi; " + LONG)
    driver.start(spec)
    child = read_pid(tmp_path / "child.pid")
    wait_for(lambda: driver.inspect(spec.instance_id).restarts == 1, what="restart")
    wait_for(lambda: not is_live(child), what="the leftover child to be killed")


def test_memory_limit_restarts_the_instance(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    events = Events()
    driver = drivers(on_event=events, memory_check_interval=0.05, backoff_initial=30, backoff_max=30)
    script = "import time; b = b'x' * (80 * 1024 * 1024); time.sleep(60)"
    spec = make_spec(f'exec {sys.executable} -c "{script}"', memory_limit_mb=40)
    driver.start(spec)
    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).state is InstanceState.BACKOFF and s, what="the memory watchdog"
    )
    assert st.last_event.startswith("exceeded memory limit (") and "> 40 MB)" in st.last_event  # type: ignore[union-attr]
    assert st.last_exit_code == 137  # type: ignore[union-attr]


def test_failing_event_callback_does_not_stop_supervision(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    def boom(*_: str) -> None:
        raise RuntimeError("callback bug")

    driver = drivers(on_event=boom)
    spec = make_spec("exit 1")
    driver.start(spec)
    wait_for(lambda: driver.inspect(spec.instance_id).restarts >= 2, what="restarts despite callback errors")


def test_signal_reaches_the_process_group(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    spec = make_spec("trap 'echo usr1 >> sig.txt' USR1; touch ready; while :; do sleep 0.05; done")
    driver.start(spec)
    wait_for(lambda: (tmp_path / "ready").exists(), what="the trap to be set")
    driver.signal(spec.instance_id, signal.SIGUSR1)
    wait_for(lambda: (tmp_path / "sig.txt").exists(), what="the trap to run")
    assert driver.inspect(spec.instance_id).state is InstanceState.RUNNING


# -- adoption ------------------------------------------------------------------------------------


def test_a_new_driver_adopts_by_pid_and_create_time(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    old = drivers()
    spec = make_spec(LONG)
    st = old.start(spec)
    assert st.pid and st.create_time
    old.close()  # daemon exits: the app keeps running
    assert is_live(st.pid)

    new = drivers()
    assert not new.adopt(spec, st.pid, st.create_time + 1.0)  # same pid, other start time: refused
    assert not new.adopt(spec, 999_999_999, st.create_time)  # no such pid
    assert new.list() == []
    assert new.adopt(spec, st.pid, st.create_time)

    adopted = new.inspect(spec.instance_id)
    assert adopted.state is InstanceState.RUNNING and adopted.pid == st.pid
    assert adopted.create_time == st.create_time
    with pytest.raises(Conflict):
        new.adopt(spec, st.pid, st.create_time)
    new.stop(spec.instance_id, timeout=5)
    assert not is_live(st.pid)


def test_an_adopted_instance_that_dies_is_restarted(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    old = drivers()
    spec = make_spec(LONG)
    st = old.start(spec)
    old.close()
    events = Events()
    new = drivers(on_event=events)
    assert st.pid and st.create_time and new.adopt(spec, st.pid, st.create_time)

    os.kill(st.pid, signal.SIGKILL)  # not new's child: it sees a zombie or nothing, never a code
    after = wait_for(
        lambda: (s := new.inspect(spec.instance_id)).restarts == 1 and s.pid and s,
        what="restart of the adopted instance",
    )
    assert after.pid != st.pid and after.last_exit_code is None  # type: ignore[union-attr]
    assert events.items[0] == (spec.instance_id, "exited", "exited (code unknown); restarting now")
    assert events.kinds() == ["exited", "restarted"]


def test_adopts_a_process_that_is_not_its_child(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    launcher = (
        "import subprocess, sys; p = subprocess.Popen(['/bin/sh', '-c', 'exec sleep 60'], "
        "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
    )
    pid = int(subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, check=True).stdout)
    drivers.extra_pids.append(pid)  # type: ignore[attr-defined]
    driver = drivers()
    assert psutil.Process(pid).ppid() != os.getpid()
    spec = make_spec(LONG)

    assert driver.adopt(spec, pid, psutil.Process(pid).create_time())
    driver.stop(spec.instance_id, timeout=5)
    assert not is_live(pid)


def test_refuses_to_adopt_a_process_that_does_not_lead_its_group(
    driver: LocalDriver, make_spec: Callable[..., InstanceSpec]
) -> None:
    proc = subprocess.Popen(["sleep", "60"])  # shares the test's process group: never ours to signal
    try:
        assert not driver.adopt(make_spec(LONG), proc.pid, psutil.Process(proc.pid).create_time())
    finally:
        proc.kill()
        proc.wait()


def test_close_leaves_instances_running(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    driver = drivers()
    st = driver.start(make_spec(LONG))
    driver.close()
    assert st.pid and is_live(st.pid)  # (the fixture's teardown still stops it)
