"""The pure side of the Podman driver: containers.conf, env plans, argv lists, inspect parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slipstream.errors import InvalidInput
from slipstream.runtime.base import InstanceSpec
from slipstream.runtime.podman_commands import (
    build_job_argv,
    build_run_argv,
    build_stop_argv,
    container_env,
    container_name,
    memory_cgroup_of,
    parse_command,
    parse_inspect,
    parse_oom_kills,
    parse_ps,
    plan_env,
    render_containers_conf,
)


def spec(**kw: object) -> InstanceSpec:
    base: dict[str, object] = {
        "instance_id": "web-d3-1",
        "service": "web",
        "deploy_id": 3,
        "command": "",
        "cwd": Path("/nonexistent"),
        "env": {"A": "1"},
        "log_path": Path("/tmp/x.log"),
        "image": "localhost/slipstream/web:b7",
    }
    base.update(kw)
    return InstanceSpec(**base)  # type: ignore[arg-type]


def test_containers_conf_has_the_machine_recipe() -> None:
    text = render_containers_conf()
    for line in (
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
        'runtime = "runc"',
        'events_logger = "file"',
        'cgroup_manager = "cgroupfs"',
        "http_proxy = false",
    ):
        assert line in text.splitlines()
    assert text.index("[containers]") < text.index("http_proxy") < text.index("[engine]") < text.index("runtime")


def test_run_argv_for_a_web_instance() -> None:
    s = spec(port=18001, memory_limit_mb=512, cpus=0.5, volumes=(("/srv/disk", "/data"),), shutdown_delay_s=12.4)
    argv = build_run_argv(s, name="slip-web-d3-1", owner="abc", env_file="/e/1.env", by_name=["ML"])
    assert argv == [
        "podman", "run", "--detach", "--replace", "--name", "slip-web-d3-1", "--pull", "never", "--log-driver", "passthrough",
        "--label", "io.slipstream.owner=abc", "--label", "io.slipstream.instance=web-d3-1",
        "--label", "io.slipstream.service=web", "--label", "io.slipstream.deploy=3",
        "--env-file", "/e/1.env", "--env", "ML",
        "--publish", "127.0.0.1:18001:10000",
        "--memory", "512m", "--memory-swap", "512m", "--cpus", "0.5",
        "--volume", "/srv/disk:/data",
        "--stop-timeout", "12",
        "localhost/slipstream/web:b7",
    ]  # fmt: skip


def test_run_argv_command_replaces_cmd_without_a_shell() -> None:
    argv = build_run_argv(
        spec(command="sh -c 'exec httpd -f -p $PORT'", port=1, container_port=8080),
        name="n",
        owner="o",
        env_file="/e",
    )
    assert argv[argv.index("--publish") + 1] == "127.0.0.1:1:8080"
    assert argv[-4:] == ["localhost/slipstream/web:b7", "sh", "-c", "exec httpd -f -p $PORT"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"image": None}, "has no image"),
        ({"command": "echo 'unclosed"}, "check its quotes"),
        ({"volumes": (("relative", "/data"),)}, "two absolute paths"),
        ({"volumes": (("/a:b", "/data"),)}, "cannot be mounted"),
    ],
)
def test_run_argv_rejects(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_run_argv(spec(**kw), name="n", owner="o", env_file="/e")


def test_container_env_sets_port_to_the_container_port() -> None:
    assert container_env(spec(env={"PORT": "18001", "A": "1"}, port=18001))["PORT"] == "10000"
    assert container_env(spec(env={"A": "1"}, port=18001, container_port=8080))["PORT"] == "8080"
    assert "PORT" not in container_env(spec(env={"A": "1"}))  # a worker publishes nothing


def test_env_plan_keeps_multiline_values_out_of_the_file() -> None:
    plan = plan_env({"B": "two words ", "A": "x=y#z", "KEY": "-----BEGIN\nabc\n-----END", "CR": "a\r"})
    assert plan.file_text == "A=x=y#z\nB=two words \n"
    assert dict(plan.by_name) == {"CR": "a\r", "KEY": "-----BEGIN\nabc\n-----END"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"A B": "1"}, "cannot be passed"),
        ({"": "1"}, "cannot be passed"),
        ({"A=B": "1"}, "cannot be passed"),
        ({"A": "x\0y"}, "NUL byte"),
        ({"PATH": "a\nb"}, "multi-line value"),
        ({"LD_PRELOAD": "a\nb"}, "multi-line value"),
    ],
)
def test_env_plan_rejects(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_env(env)


def test_job_argv_runs_a_shell_command_in_the_image() -> None:
    argv = build_job_argv(
        "img@sha256:1", "rake db:migrate && echo ok", name="slip-job-1", owner="o", env_file="/e", memory_limit_mb=64
    )
    assert argv[:3] == ["podman", "create", "--rm"]
    assert argv[-5:] == ["--entrypoint", "/bin/sh", "img@sha256:1", "-c", "rake db:migrate && echo ok"]
    assert "--memory" in argv and "--publish" not in argv


def test_stop_and_names() -> None:
    assert build_stop_argv("n", 2.6) == ["podman", "stop", "--ignore", "--time", "3", "n"]
    assert container_name("slip-", "web-d1-1") == "slip-web-d1-1"
    with pytest.raises(InvalidInput, match="cannot name a container"):
        container_name("slip-", "web/1")
    assert parse_command("a 'b c' \"d\"") == ["a", "b c", "d"]


def test_parse_inspect_running_and_exited() -> None:
    running = [{"Id": "abc", "Name": "n", "State": {"Running": True, "Pid": 42, "ExitCode": 0},
                "Config": {"Labels": {"k": "v"}}, "ImageName": "img"}]  # fmt: skip
    info = parse_inspect(json.dumps(running))
    assert info is not None and info.running and info.pid == 42 and info.exit_code is None
    assert info.labels == {"k": "v"} and info.image == "img"
    exited = [{"Id": "abc", "Name": "n", "State": {"Running": False, "Pid": 0, "ExitCode": 137}, "Config": {}}]
    info = parse_inspect(json.dumps(exited))
    assert info is not None and not info.running and info.pid is None and info.exit_code == 137
    assert parse_inspect("[]") is None


def test_parse_ps_and_cgroup_files() -> None:
    ps = [{"Names": ["slip-a"], "Labels": {"x": "y"}, "State": "running"}, {"Names": ["slip-b"], "State": "exited"}]
    assert parse_ps(json.dumps(ps)) == [("slip-a", {"x": "y"}, True), ("slip-b", {}, False)]
    v1 = "12:pids:/libpod_parent/libpod-1\n4:memory:/libpod_parent/libpod-1\n0::/\n"
    assert memory_cgroup_of(v1) == "/libpod_parent/libpod-1"
    assert memory_cgroup_of("0::/machine/libpod-2\n") == "/machine/libpod-2"
    assert parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2
    assert parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n") == 1
    assert parse_oom_kills("") == 0
