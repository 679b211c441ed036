"""Memory caps enforced by the kernel: per-instance memory cgroups, and the driver's event."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slipstream.runtime import InstanceSpec, InstanceState, LocalDriver
from slipstream.runtime.cgroups import MemoryCgroups, own_cgroup, wrap
from tests.polling import wait_for

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


def test_wrap_joins_before_the_command() -> None:
    argv = ["/bin/sh", "-c", "python app.py"]
    assert wrap(argv, None) == argv
    wrapped = wrap(argv, Path("/cg/x/cgroup.procs"))
    assert wrapped[:3] == ["/bin/sh", "-c", 'echo $$ > "$0" 2>/dev/null; exec "$@"']
    assert wrapped[3:] == ["/cg/x/cgroup.procs", *argv]


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
