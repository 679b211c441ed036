"""FakeDriver: the in-memory driver engine tests use keeps the protocol's promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import Conflict, InvalidInput, NotFound
from slipstream.runtime import Driver, FakeDriver, FakeHost, InstanceSpec, InstanceState, LocalDriver

from .conftest import Events


def spec(iid: str = "web-d1-1", command: str = "serve") -> InstanceSpec:
    return InstanceSpec(
        instance_id=iid,
        service="web",
        deploy_id=1,
        command=command,
        cwd=Path("/srv"),
        env={"PORT": "10001"},
        log_path=Path("/tmp/unused.log"),
        port=10001,
    )


def test_both_drivers_satisfy_the_protocol() -> None:
    def accepts(d: Driver) -> Driver:
        return d

    accepts(FakeDriver())
    accepts(LocalDriver.__new__(LocalDriver))
    for name in ("start", "stop", "signal", "inspect", "list", "adopt", "close", "run_once"):
        assert callable(getattr(FakeDriver, name)) and callable(getattr(LocalDriver, name))


def test_start_inspect_stop() -> None:
    events = Events()
    d = FakeDriver(events)
    st = d.start(spec())
    assert st.state is InstanceState.RUNNING and st.pid and st.create_time
    assert d.inspect("web-d1-1") == st and d.list() == [st]
    with pytest.raises(Conflict):
        d.start(spec())
    d.stop("web-d1-1", timeout=3)
    assert d.list() == [] and d.host.running() == []
    assert events.kinds() == ["started", "stopped"]
    assert d.calls == [("start", "web-d1-1"), ("start", "web-d1-1"), ("stop", "web-d1-1", 3)]
    with pytest.raises(NotFound):
        d.stop("web-d1-1")


def test_crash_and_restart_follow_the_backoff() -> None:
    events = Events()
    d = FakeDriver(events)
    first = d.start(spec())
    crashed = d.crash("web-d1-1", exit_code=2)
    assert crashed.state is InstanceState.BACKOFF and crashed.pid is None and crashed.last_exit_code == 2
    assert crashed.next_restart_in_s == 0 and crashed.last_event == "exited with code 2; restarting now"
    again = d.restart("web-d1-1")
    assert again.state is InstanceState.RUNNING and again.pid != first.pid and again.restarts == 1
    assert d.crash("web-d1-1").next_restart_in_s == 1
    assert events.kinds() == ["started", "exited", "restarted", "exited"]
    with pytest.raises(Conflict):
        d.signal("web-d1-1", 15)


def test_a_new_driver_on_the_same_host_adopts() -> None:
    host = FakeHost()
    old = FakeDriver(host=host)
    st = old.start(spec())
    other = old.start(spec("web-d1-2"))
    old.close()
    host.vanish(other.pid or 0)
    new = FakeDriver(host=host)
    assert new.adopt(spec(), st.pid or 0, (st.create_time or 0) + 1) is False
    assert new.adopt(spec("web-d1-2"), other.pid or 0, other.create_time or 0) is False
    assert new.adopt(spec(), st.pid or 0, st.create_time or 0) is True
    assert new.inspect("web-d1-1").pid == st.pid


def test_fail_start_and_run_once(tmp_path: Path) -> None:
    d = FakeDriver()
    d.fail_start.add("broken")
    with pytest.raises(InvalidInput):
        d.start(spec(command="broken"))
    d.run_once_results["migrate"] = 3
    d.run_once_output["migrate"] = ["applying 0001", "boom"]
    lines: list[str] = []
    assert d.run_once("migrate", tmp_path, {}, tmp_path / "m.log", on_output=lines.append) == 3
    assert lines == ["applying 0001", "boom"]
    assert (tmp_path / "m.log").read_text() == "applying 0001\nboom\n"
    assert d.run_once("other", tmp_path, {}, tmp_path / "m.log") == 0
