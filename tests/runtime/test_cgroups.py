"""Limits enforced by the kernel: per-instance memory, cpu, pids and freezer cgroups, the driver's
events, and the stop sweep that kills what an instance started outside its process group."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slipstream.runtime import InstanceSpec, InstanceState, LocalDriver
from slipstream.runtime.cgroups import (
    LimitCgroups,
    MemoryCgroups,
    OneOffCgroups,
    cpu_quota_us,
    members,
    own_cgroup,
    wrap,
)
from tests.polling import wait_for

from .conftest import Events, is_live

V1 = "12:pids:/x\n4:memory:/process_api/abc\n0::/\n"
V2 = "0::/system.slice/slipstream.service\n"


def test_own_cgroup_reads_both_versions() -> None:
    assert own_cgroup(V1, 1) == "/process_api/abc"
    assert own_cgroup(V1, 2) == "/"
    assert own_cgroup(V2, 2) == "/system.slice/slipstream.service"
    assert own_cgroup(V2, 1) is None


def test_detect_without_a_controller_is_none(tmp_path: Path) -> None:
    (tmp_path / "self").write_text(V2)
    assert MemoryCgroups.detect("slipstream-t", root=tmp_path, proc_self=tmp_path / "self") is None
    assert MemoryCgroups.detect("bad/label") is None


def test_own_cgroup_finds_each_v1_controller() -> None:
    assert own_cgroup(V1, 1, "pids") == "/x"
    assert own_cgroup(V1, 1, "cpu") is None


def test_wrap_joins_before_the_command(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", "python app.py"]
    assert wrap(argv, None) == argv
    assert wrap(argv, []) == argv
    wrapped = wrap(argv, Path("/cg/x/cgroup.procs"))
    assert wrapped[3:] == ["1", "/cg/x/cgroup.procs", *argv]
    files = [tmp_path / "a procs", tmp_path / "b"]
    out = subprocess.run(wrap(["/bin/sh", "-c", 'echo "$$ $0 $1"', "zero", "one"], files), capture_output=True)
    pid, *rest = out.stdout.decode().split()
    assert rest == ["zero", "one"]  # the command's own arguments arrive untouched
    assert [f.read_text().strip() for f in files] == [pid, pid]  # the exec'd command is the shell that joined


def test_cpu_quota_is_the_plan_share_capped_at_the_machine() -> None:
    assert cpu_quota_us(0.5, cores=2) == 50_000
    assert cpu_quota_us(0.1, cores=2) == 10_000
    assert cpu_quota_us(8, cores=2) == 200_000  # pro ultra on a 2-core machine: every core, no more
    assert cpu_quota_us(0.001, cores=2) == 1_000  # the kernel's smallest quota


def test_limit_cgroups_on_a_v1_tree(tmp_path: Path) -> None:
    """detect and prepare against a directory laid out like cgroup v1 (no kernel needed)."""
    (tmp_path / "self").write_text("8:pids:/\n6:freezer:/\n1:cpu,cpuacct:/a\n4:memory:/m\n")
    for ctl in ("pids", "freezer", "cpu"):
        (tmp_path / ctl).mkdir()
        (tmp_path / ctl / "cgroup.procs").write_text("")
    (tmp_path / "cpu" / "a").mkdir()
    limits = LimitCgroups.detect("slipstream-t", root=tmp_path, proc_self=tmp_path / "self", cores=2)
    assert limits is not None and limits.version == 1
    assert dict(limits.bases) == {
        "cpu": tmp_path / "cpu/a/slipstream-t",
        "pids": tmp_path / "pids/slipstream-t",
        "freezer": tmp_path / "freezer/slipstream-t",
    }
    procs = limits.prepare("web-d1-1", 0.5, 512)
    assert procs == [tmp_path / f"{c}/slipstream-t/web-d1-1/cgroup.procs" for c in ("cpu/a", "pids", "freezer")]
    assert (tmp_path / "cpu/a/slipstream-t/web-d1-1/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / "pids/slipstream-t/web-d1-1/pids.max").read_text() == "512"
    assert limits.cpu_quota("web-d1-1") == 0.5
    # no plan: no quota, and on v1 the instance stays out of the cpu hierarchy; no pids limit: "max"
    assert [p.parent.parent.parent.name for p in limits.prepare("w-d1-1", None, 0)] == ["pids", "freezer"]
    assert (tmp_path / "pids/slipstream-t/w-d1-1/pids.max").read_text() == "max"
    assert limits.prepare("../escape", 1, 1) == []


def test_limit_cgroups_on_a_v2_tree(tmp_path: Path) -> None:
    """v2: one directory per instance below the daemon's cgroup, cpu and pids delegated to it."""
    (tmp_path / "self").write_text("0::/daemon\n")
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "daemon").mkdir()
    limits = LimitCgroups.detect("slipstream-t", root=tmp_path, proc_self=tmp_path / "self", cores=2)
    assert limits is not None and limits.version == 2
    base = tmp_path / "daemon/slipstream-t"
    assert dict(limits.bases) == {"cpu": base, "pids": base}
    assert (tmp_path / "daemon/cgroup.subtree_control").read_text() == "+cpu +pids"
    assert limits.prepare("web-d1-1", 0.5, 512) == [base / "web-d1-1/cgroup.procs"]  # one directory joined once
    assert (base / "web-d1-1/cpu.max").read_text() == "50000 100000"
    assert limits.cpu_quota("web-d1-1") == 0.5
    limits.prepare("w-d1-1", None, None)
    assert (base / "w-d1-1/cpu.max").read_text() == "max 100000"
    assert (base / "w-d1-1/pids.max").read_text() == "max"


@pytest.fixture
def cgroups() -> Iterator[MemoryCgroups]:
    found = MemoryCgroups.detect(f"slipstream-test-{secrets.token_hex(4)}")
    if found is None:
        pytest.skip("this machine gives no memory cgroup to the test process (the RSS watchdog covers it)")
    try:
        yield found
    finally:
        found.cleanup()


def test_prepare_sets_and_raises_the_limit(cgroups: MemoryCgroups) -> None:
    procs = cgroups.prepare("web-d1-1", 40)
    assert procs is not None and procs.name == "cgroup.procs"
    limit_file = "memory.limit_in_bytes" if cgroups.version == 1 else "memory.max"
    assert (procs.parent / limit_file).read_text().strip() == str(40 << 20)
    cgroups.prepare("web-d1-1", 100)  # raising it (v1: memsw first) works too
    assert (procs.parent / limit_file).read_text().strip() == str(100 << 20)
    assert cgroups.oom_kills("web-d1-1") == 0
    cgroups.remove("web-d1-1")
    assert not procs.parent.exists()


def test_the_kernel_stops_an_instance_at_its_cap(
    cgroups: MemoryCgroups, drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    # the watchdog is kept out of the way (checks once a minute): only the kernel can stop it
    driver = drivers(memory_cgroups=cgroups, memory_check_interval=60, backoff_initial=30, backoff_max=30)
    script = "import time; b = bytearray(120 * 1024 * 1024); time.sleep(60)"
    spec = make_spec(f'exec {sys.executable} -c "{script}"', memory_limit_mb=40)
    driver.start(spec)
    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).state is InstanceState.BACKOFF and s,
        what="the kernel's OOM kill",
    )
    assert st.last_event.startswith("exceeded memory limit (reached the 40 MB cap; killed by the kernel)")  # type: ignore[union-attr]
    assert st.last_exit_code == 137  # type: ignore[union-attr]
    assert cgroups.oom_kills(spec.instance_id) >= 1
    peak = cgroups.peak_mb(spec.instance_id)
    assert peak is None or peak <= 40.5
    driver.stop(spec.instance_id, timeout=1)
    assert not (cgroups.base / spec.instance_id).exists()  # removed with the instance
    cgroups.prepare("left-over", 40)
    cgroups.cleanup()  # what 'slipstream down' does
    assert not cgroups.base.exists()


def test_a_crash_under_the_cap_is_not_called_a_memory_kill(
    cgroups: MemoryCgroups, drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    driver = drivers(memory_cgroups=cgroups, backoff_initial=30, backoff_max=30)
    spec = make_spec("exit 3", memory_limit_mb=40)
    driver.start(spec)
    st = wait_for(
        lambda: (s := driver.inspect(spec.instance_id)).state is InstanceState.BACKOFF and s, what="the crash"
    )
    assert st.last_event.startswith("exited with code 3")  # type: ignore[union-attr]
    driver.stop(spec.instance_id, timeout=1)


@pytest.fixture
def limits() -> Iterator[LimitCgroups]:
    found = LimitCgroups.detect(f"slipstream-test-{secrets.token_hex(4)}")
    if found is None or "pids" not in dict(found.bases):
        pytest.skip("this machine gives no pids cgroup to the test process")
    try:
        yield found
    finally:
        found.cleanup()


def test_stop_kills_what_left_the_process_group(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    events = Events()
    driver = drivers(limit_cgroups=limits, pids_max=64, on_event=events)
    # a daemonising child: its own session and group, and its parent gone (reparented to init)
    spec = make_spec("(setsid sleep 1000 & echo $! > child.pid); exec sleep 60")
    driver.start(spec)
    child = int(wait_for(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip()))
    wait_for(lambda: os.getsid(child) == child, what="setsid")  # out of reach of a process group kill
    assert (dict(limits.bases)["pids"] / spec.instance_id / "pids.max").read_text().strip() == "64"
    driver.stop(spec.instance_id, timeout=2)
    assert not is_live(child)
    assert events.items[-1] == (spec.instance_id, "stopped", "stopped; killed 1 more process it had started")
    assert limits.groups(spec.instance_id) == []  # removed once empty


def test_a_crash_sweeps_its_setsid_children_before_the_restart(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    driver = drivers(limit_cgroups=limits, backoff_initial=30, backoff_max=30)
    spec = make_spec("setsid sleep 1000 & echo $! >> children; sleep 0.3; exit 1")
    driver.start(spec)
    wait_for(lambda: driver.inspect(spec.instance_id).state is InstanceState.BACKOFF, what="the second crash")
    children = [int(x) for x in (tmp_path / "children").read_text().split()]
    assert len(children) == 2 and not any(is_live(c) for c in children)
    driver.stop(spec.instance_id, timeout=1)


def test_the_process_limit_stops_a_fork_bomb_and_the_sweep_ends_it(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    driver = drivers(limit_cgroups=limits, pids_max=20, backoff_initial=30, backoff_max=30)
    # forks until the kernel refuses, then stays; each child has its own session, so only the cgroup holds them all
    bomb = "import subprocess, time\nwhile True:\n try: subprocess.Popen(['setsid', 'sleep', '1000'])\n except OSError: break\ntime.sleep(60)"
    spec = make_spec(f'exec {sys.executable} -c "{bomb}"')
    driver.start(spec)
    group = dict(limits.bases)["pids"] / spec.instance_id
    wait_for(lambda: int((group / "pids.events").read_text().split()[-1]) > 0, what="a refused fork")
    assert 10 < len(members([group])) <= 20
    assert driver.inspect(spec.instance_id).state is InstanceState.RUNNING
    driver.stop(spec.instance_id, timeout=1)
    assert not group.exists()  # emptied by the sweep, so removable


def test_cpu_quota_holds_an_instance_to_its_share(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec], tmp_path: Path
) -> None:
    if "cpu" not in dict(limits.bases):
        pytest.skip("no cpu cgroup here")
    driver = drivers(limit_cgroups=limits)
    spec = make_spec("exec python3 -c 'while True: pass'", cpus=0.1)
    st = driver.start(spec)
    assert limits.cpu_quota(spec.instance_id) == pytest.approx(0.1)
    import psutil

    proc = psutil.Process(st.pid)
    before, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(1.0)
    used = (sum(proc.cpu_times()[:2]) - before) / (time.monotonic() - t0)
    assert used < 0.2  # a busy loop held to about a tenth of a core (unlimited it takes a whole one)
    driver.stop(spec.instance_id, timeout=1)


def _run_groups(limits: LimitCgroups) -> list[Path]:
    return [g for _, base in limits.bases for g in base.glob("run-*")]


def test_a_one_off_leaves_no_setsid_child_behind(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], tmp_path: Path
) -> None:
    # a cron-like run that daemonises a child out of its process group and exits at once
    driver = drivers(limit_cgroups=limits, pids_max=64)
    command = "setsid sleep 1000 & echo $! > child.pid; cat /proc/self/cgroup | grep -c run- ; echo done"
    lines: list[str] = []
    started = time.monotonic()
    code = driver.run_once(command, tmp_path, {"PATH": os.environ["PATH"]}, tmp_path / "run.log", 30, lines.append)
    assert code == 0 and lines[-1] == "done" and int(lines[0]) >= 1  # it ran inside its run-* cgroups
    assert time.monotonic() - started < 1.5  # swept, so nothing held the output pipe until the 2 s drain
    assert not is_live(int((tmp_path / "child.pid").read_text()))
    assert _run_groups(limits) == []  # removed after the run


def test_a_one_off_that_times_out_loses_its_setsid_children_too(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], tmp_path: Path
) -> None:
    driver = drivers(limit_cgroups=limits)
    command = "setsid sleep 1000 & echo $! > child.pid; exec sleep 60"
    assert driver.run_once(command, tmp_path, {"PATH": os.environ["PATH"]}, tmp_path / "run.log", 0.5) == 124
    assert not is_live(int((tmp_path / "child.pid").read_text()))
    assert _run_groups(limits) == []


def test_a_one_off_fork_bomb_is_held_at_the_process_limit(
    limits: LimitCgroups, drivers: Callable[..., LocalDriver], tmp_path: Path
) -> None:
    driver = drivers(limit_cgroups=limits, pids_max=20)
    # forks setsid children until the kernel refuses, says how many it got, and exits
    bomb = (
        "import subprocess\nkids = []\nwhile len(kids) < 1000:\n"
        " try: kids.append(subprocess.Popen(['setsid', 'sleep', '1000']).pid)\n except OSError: break\n"
        "open('kids', 'w').write(' '.join(map(str, kids)))\nprint(len(kids))"
    )
    lines: list[str] = []
    code = driver.run_once(
        f'exec {sys.executable} -c "{bomb}"',
        tmp_path,
        {"PATH": os.environ["PATH"]},
        tmp_path / "r.log",
        30,
        lines.append,
    )
    assert code == 0 and 10 < int(lines[-1]) < 20  # refused at pids.max (the python process counts too)
    kids = [int(k) for k in (tmp_path / "kids").read_text().split()]
    assert not any(is_live(k) for k in kids)  # every one swept when the run ended
    assert _run_groups(limits) == []


def test_a_one_off_gets_the_plan_memory_cap_and_cpu_share(
    cgroups: MemoryCgroups, limits: LimitCgroups, drivers: Callable[..., LocalDriver], tmp_path: Path
) -> None:
    driver = drivers(memory_cgroups=cgroups, limit_cgroups=limits)
    env = {"PATH": os.environ["PATH"]}
    grow = "b = bytearray(120 * 1024 * 1024)"
    code = driver.run_once(
        f'exec {sys.executable} -c "{grow}"', tmp_path, env, tmp_path / "m.log", 30, memory_limit_mb=40
    )
    assert code == 137  # the kernel killed it at its 40 MB cap
    assert list(cgroups.base.glob("run-*")) == []
    if "cpu" not in dict(limits.bases):
        return
    quota = "cpu.cfs_quota_us" if limits.version == 1 else "cpu.max"
    lines: list[str] = []
    cat = f"cat {dict(limits.bases)['cpu']}/run-*/{quota}"
    assert driver.run_once(cat, tmp_path, env, tmp_path / "c.log", 30, lines.append, cpus=0.5) == 0
    assert lines[0].split()[0] == "50000"


def test_a_new_daemon_ends_what_an_old_one_off_left_in_its_cgroups(limits: LimitCgroups, tmp_path: Path) -> None:
    oneoff = OneOffCgroups(None, limits, 16)
    name, procs = oneoff.prepare(None, None)
    # as if the daemon died mid-run: a daemonised child is still in the run's cgroups
    subprocess.run(wrap(["/bin/sh", "-c", f"setsid sleep 1000 & echo $! > {tmp_path}/child"], procs), check=True)
    child = int((tmp_path / "child").read_text())
    assert is_live(child)
    assert oneoff.end_stale() == 1
    assert not is_live(child) and limits.groups(name) == []
    assert oneoff.end_stale() == 0
