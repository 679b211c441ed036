"""PodmanDriver against real Podman: the test web app (busybox httpd) as containers."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slipstream.builds.docker import ImageBuild
from slipstream.errors import Conflict, InvalidInput, NotFound
from slipstream.runtime.base import Driver, InstanceSpec, InstanceState
from slipstream.runtime.podman import PodmanDriver
from slipstream.runtime.podman_cli import PodmanCli
from slipstream.runtime.podman_commands import build_inspect_argv
from tests.polling import wait_for

from .conftest import PREFIX, http_get, need_podman

need_podman()


class Events:
    """Collects on_event calls."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, instance_id: str, kind: str, message: str) -> None:
        self.items.append((instance_id, kind, message))

    def kinds(self, instance_id: str) -> list[str]:
        return [k for i, k, _ in self.items if i == instance_id]

    def messages(self, instance_id: str, kind: str) -> list[str]:
        return [m for i, k, m in self.items if i == instance_id and k == kind]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def drivers(podman: PodmanCli, events: Events) -> Iterator[Callable[..., PodmanDriver]]:
    """Make PodmanDrivers with fast back-off; on teardown every supervised instance is stopped."""
    made: list[PodmanDriver] = []

    def make(**kw: object) -> PodmanDriver:
        opts: dict[str, object] = {
            "name_prefix": PREFIX,
            "backoff_initial": 0.2,
            "backoff_max": 0.8,
            "poll_interval": 0.1,
        }
        opts.update(kw)
        d = PodmanDriver(podman, events, **opts)  # type: ignore[arg-type]
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            for st in d.list():
                try:
                    d.stop(st.instance_id, timeout=0)
                except Exception:
                    pass
            d.close()


@pytest.fixture
def make_spec(tmp_path: Path, web_image: ImageBuild) -> Callable[..., InstanceSpec]:
    def make(instance_id: str = "web-d1-1", **kw: object) -> InstanceSpec:
        base: dict[str, object] = {
            "instance_id": instance_id,
            "service": "web",
            "deploy_id": 1,
            "command": "",
            "cwd": tmp_path,
            "env": {"GREETING": "tester"},
            "log_path": tmp_path / "logs" / f"{instance_id}.log",
            "port": free_port(),
            "image": web_image.image,
            "shutdown_delay_s": 5.0,
        }
        base.update(kw)
        return InstanceSpec(**base)  # type: ignore[arg-type]

    return make


def container(podman: PodmanCli, instance_id: str) -> dict[str, object] | None:
    res = podman.run(build_inspect_argv(PREFIX + instance_id), check=False)
    return json.loads(res.stdout)[0] if res.returncode == 0 else None


def test_driver_satisfies_the_protocol(drivers: Callable[..., PodmanDriver]) -> None:
    driver: Driver = drivers()
    assert driver.list() == []


def test_start_serves_http_on_the_loopback_port_with_logs_in_the_file(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli
) -> None:
    driver = drivers()
    spec = make_spec(memory_limit_mb=64, cpus=0.5)
    spec.log_path.parent.mkdir(parents=True)
    spec.log_path.write_text("earlier line\n")

    status = driver.start(spec)

    assert status.state is InstanceState.RUNNING and status.pid and status.create_time
    code, body = wait_for(lambda: (r := http_get(spec.port or 0))[0] == 200 and r, what="HTTP 200")  # type: ignore[misc]
    assert body == "hello from tests\n"  # the build argument reached the RUN step
    lines = spec.log_path.read_text().splitlines()
    assert lines[0] == "earlier line" and "listening on 10000 as tester" in lines
    info = container(podman, spec.instance_id)
    assert info is not None
    ports = info["NetworkSettings"]["Ports"]["10000/tcp"]  # type: ignore[index]
    assert ports == [{"HostIp": "127.0.0.1", "HostPort": str(spec.port)}]
    host = info["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024  # type: ignore[index]
    assert host["NanoCpus"] == 500_000_000  # type: ignore[index]
    with pytest.raises(Conflict):
        driver.start(spec)


def test_env_values_reach_the_app_but_not_argv(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli
) -> None:
    env = {
        "PLAIN": "  spaced value # not a comment $HOME `x` 'q' \"dq\" ",
        "MULTI": "-----BEGIN KEY-----\nabc\n-----END KEY-----",
        "UNICODE": "héllo wörld",
        "EMPTY": "",
    }
    script = (
        'for k in PLAIN MULTI UNICODE EMPTY PORT; do eval "v=\\$$k"; printf "%s=[%s]\\n" "$k" "$v"; done; exec sleep 60'
    )
    spec = make_spec(env=env, command=f"sh -c '{script}'")
    driver = drivers()
    driver.start(spec)
    text = str(wait_for(lambda: "PORT=[" in spec.log_path.read_text() and spec.log_path.read_text(), what="env dump"))
    for key, value in env.items():
        assert f"{key}=[{value}]" in text
    assert "PORT=[10000]" in text
    info = container(podman, spec.instance_id)
    assert info is not None
    create_command = " ".join(info["Config"]["CreateCommand"])  # type: ignore[index]
    assert "spaced value" not in create_command and "BEGIN KEY" not in create_command
    assert list((podman.directory / "env").iterdir()) == []  # env files are gone once podman run returns
    # What Podman 4.3.1 does expose (root only): Config.Env holds every value.
    assert any(str(e).startswith("PLAIN=  spaced") for e in info["Config"]["Env"])  # type: ignore[index]


def test_stop_removes_the_container(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli, events: Events
) -> None:
    driver = drivers()
    spec = make_spec()
    driver.start(spec)
    wait_for(lambda: http_get(spec.port or 0)[0] == 200, what="HTTP 200")
    started = time.monotonic()
    driver.stop(spec.instance_id)
    assert time.monotonic() - started < 4  # the app left on SIGTERM, no SIGKILL wait
    assert events.messages(spec.instance_id, "stopped") == ["stopped"]
    assert "got TERM" in spec.log_path.read_text()
    assert container(podman, spec.instance_id) is None
    with pytest.raises(NotFound):
        driver.inspect(spec.instance_id)


def test_stop_kills_an_app_that_ignores_sigterm(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli, events: Events
) -> None:
    driver = drivers()
    spec = make_spec(command="sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'")
    driver.start(spec)
    driver.stop(spec.instance_id, timeout=1)
    assert events.messages(spec.instance_id, "stopped") == ["stopped with SIGKILL after 1 s"]
    assert container(podman, spec.instance_id) is None


def test_a_killed_container_is_restarted_with_back_off(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], events: Events
) -> None:
    driver = drivers()
    spec = make_spec()
    first = driver.start(spec)
    wait_for(lambda: http_get(spec.port or 0)[0] == 200, what="HTTP 200")

    driver.signal(spec.instance_id, signal.SIGKILL)

    wait_for(lambda: "restarted" in events.kinds(spec.instance_id), what="restart")
    exited = events.messages(spec.instance_id, "exited")
    assert exited and exited[0].startswith("was killed by SIGKILL; restarting now")  # a first crash: at once
    status = driver.inspect(spec.instance_id)
    assert status.state is InstanceState.RUNNING and status.restarts == 1 and status.last_exit_code == 137
    assert status.pid != first.pid
    wait_for(lambda: http_get(spec.port or 0)[0] == 200, what="HTTP 200 after the restart")


def test_a_crash_loop_backs_off_longer_each_time(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], events: Events
) -> None:
    driver = drivers()
    spec = make_spec(command="sh -c 'echo crashing; exit 3'")
    driver.start(spec)
    wait_for(lambda: len(events.messages(spec.instance_id, "exited")) >= 3, what="three crashes")
    exited = events.messages(spec.instance_id, "exited")[:3]
    assert exited == [
        "exited with code 3; restarting now",
        "exited with code 3; restarting in 0.2 s",
        "exited with code 3; restarting in 0.4 s",
    ]
    assert spec.log_path.read_text().count("crashing") >= 3
    assert driver.inspect(spec.instance_id).last_exit_code == 3


def test_memory_cap_is_enforced_and_reported(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], events: Events
) -> None:
    driver = drivers()
    # 2 s of calm first: start() must have read the container's cgroup before the kernel kills it
    # (on a loaded machine 0.3 s was too short, and an unattributed kill reads as a plain SIGKILL)
    hog = "sh -c 'echo started; sleep 2; x=a; while :; do x=$x$x; done'"
    spec = make_spec(command=hog, memory_limit_mb=32, port=None)
    driver.start(spec)
    wait_for(lambda: events.messages(spec.instance_id, "exited"), what="the OOM kill")
    message = events.messages(spec.instance_id, "exited")[0]
    assert message.startswith("exceeded memory limit (reached the 32 MB cap; killed by the kernel)"), message
    assert driver.inspect(spec.instance_id).last_exit_code == 137


def test_a_new_driver_adopts_running_containers(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], events: Events
) -> None:
    old = drivers()
    spec = make_spec(command="sh -c 'while :; do echo tick; sleep 0.1; done'")
    status = old.start(spec)
    old.close()  # the daemon goes away; the container keeps running and logging
    assert status.pid and status.create_time
    size = spec.log_path.stat().st_size
    wait_for(lambda: spec.log_path.stat().st_size > size + 20, what="log lines while no daemon runs")

    new = drivers()
    assert not new.adopt(spec, status.pid, status.create_time + 1)  # another start time: not the same run
    assert not new.adopt(dataclasses.replace(spec, instance_id="web-d1-9"), status.pid, status.create_time)
    assert new.adopt(spec, status.pid, status.create_time)
    adopted = new.inspect(spec.instance_id)
    assert adopted.state is InstanceState.RUNNING and adopted.pid == status.pid
    assert adopted.last_event and adopted.last_event.startswith("adopted after a daemon restart")

    new.signal(spec.instance_id, signal.SIGKILL)  # supervised again: a crash is restarted
    wait_for(lambda: "restarted" in events.kinds(spec.instance_id), what="restart by the new driver")


def test_adopt_removes_an_exited_container(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli
) -> None:
    old = drivers()
    spec = make_spec(command="sh -c 'sleep 3'")  # still running when start() inspects it, even under load
    status = old.start(spec)
    old.close()
    wait_for(lambda: container(podman, spec.instance_id)["State"]["Running"] is False, what="exit")  # type: ignore[index]
    assert status.pid and status.create_time
    assert not drivers().adopt(spec, status.pid, status.create_time)
    assert container(podman, spec.instance_id) is None


def test_remove_unsupervised(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli
) -> None:
    old = drivers()
    kept, orphan = make_spec("web-d1-1", command="sleep 60"), make_spec("web-d1-2", command="sleep 60")
    st = old.start(kept)
    old.start(orphan)
    old.close()
    new = drivers()
    assert st.pid and st.create_time and new.adopt(kept, st.pid, st.create_time)
    assert new.remove_unsupervised() == [PREFIX + "web-d1-2"]
    assert container(podman, "web-d1-2") is None and container(podman, "web-d1-1") is not None


def test_start_failures_are_clear(drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec]) -> None:
    driver = drivers()
    with pytest.raises(InvalidInput, match="has no image"):
        driver.start(make_spec(image=None))
    spec = make_spec(image="localhost/slipstream/does-not-exist:b1")
    with pytest.raises(Exception, match="image not known"):
        driver.start(spec)
    assert "image not known" in spec.log_path.read_text()
    assert driver.list() == []


def test_run_once_streams_output_and_returns_the_exit_code(
    drivers: Callable[..., PodmanDriver], web_image: ImageBuild, tmp_path: Path, podman: PodmanCli
) -> None:
    driver = drivers()
    lines: list[str] = []
    log = tmp_path / "job.log"
    disk = tmp_path / "disk"
    disk.mkdir()
    code = driver.run_once(
        'echo "migrating $DB"; echo oops >&2; echo kept > /data/file; exit 4', tmp_path, {"DB": "a b"}, log, 60,
        lines.append, image=web_image.image, volumes=((str(disk), "/data"),),
    )  # fmt: skip
    assert code == 4
    assert (disk / "file").read_text() == "kept\n"  # a persistent disk is a volume at its mountPath
    assert "migrating a b" in lines and "oops" in lines
    assert "migrating a b" in log.read_text()
    started = time.monotonic()
    assert driver.run_once("sleep 30", tmp_path, {}, log, 1.0, image=web_image.image) == 124
    assert time.monotonic() - started < 15
    assert list((podman.directory / "env").iterdir()) == []
    with pytest.raises(InvalidInput, match="needs the image"):
        driver.run_once("true", tmp_path, {}, log)


def test_start_replaces_a_leftover_container(
    drivers: Callable[..., PodmanDriver], make_spec: Callable[..., InstanceSpec], podman: PodmanCli
) -> None:
    old = drivers()
    spec = make_spec(command="sleep 60")
    first = old.start(spec)
    old.close()  # the daemon died before it recorded the instance: nobody adopts it
    second = drivers().start(spec)
    assert second.pid != first.pid
    info = container(podman, spec.instance_id)
    assert info is not None and info["State"]["Pid"] == second.pid  # type: ignore[index]
