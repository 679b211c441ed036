"""Pure builders for the Podman driver: containers.conf text, ``podman`` argv lists, env files, and
parsers for what ``podman inspect`` prints. Nothing here runs a process.

How an instance's environment reaches the container (Podman 4.3.1, measured):

- values go in an env file (``--env-file``, 0600, deleted as soon as ``podman run`` returns), so
  they never appear in any process's argv (``/proc/*/cmdline`` is world-readable);
- a value the env-file format cannot carry (a newline, a carriage return) is passed by name
  (``--env KEY``) and Podman copies it from its own process environment;
- either way Podman stores the values in its own root-only state (``Config.Env`` of ``podman
  inspect``, its bolt database and the container's OCI ``config.json``); ``--secret type=env`` is
  no better on 4.3.1 (it shows in ``Config.Env`` too) and adds a secret store, so it is not used.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from slipstream.errors import InvalidInput
from slipstream.runtime.base import InstanceSpec

DEFAULT_CONTAINER_PORT = 10000  # Render's PORT for Docker services unless the service sets PORT
LABEL_OWNER = "io.slipstream.owner"  # which slipstream installation made the container
LABEL_INSTANCE = "io.slipstream.instance"
LABEL_SERVICE = "io.slipstream.service"
LABEL_DEPLOY = "io.slipstream.deploy"

# Names Podman (or the Go runtime, or the C library) reads from its own environment: a value for one
# of these can only travel in the env file, never by name through Podman's environment.
PODMAN_OWN_ENV = re.compile(
    r"^(PATH|HOME|TMPDIR|LD_[A-Z_]+|GO(DEBUG|GC|MAXPROCS|MEMLIMIT|TRACEBACK)|CONTAINERS_[A-Z_]+|XDG_[A-Z_]+|"
    r"REGISTRY_AUTH_FILE|DOCKER_[A-Z_]+|BUILDAH_[A-Z_]+|STORAGE_[A-Z_]+|PODMAN_[A-Z_]+|"
    r"(HTTPS?|NO|ALL|FTP)_PROXY|(https?|no|all|ftp)_proxy|SSL_CERT_(FILE|DIR)|NOTIFY_SOCKET)$"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")


def render_containers_conf(nofile: int = 20000, nproc: int = 32768) -> str:
    """The containers.conf slipstream hands every podman call (``CONTAINERS_CONF``).

    runc (crun cannot set up cgroup v1 hybrid here), cgroupfs (no systemd), events in a file, ulimits
    below the machine's hard limits, and no proxy variables copied from Podman's own environment.
    """
    return (
        "# Written by slipstream; every podman call it makes uses this file (CONTAINERS_CONF).\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "http_proxy = false\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'events_logger = "file"\n'
        'cgroup_manager = "cgroupfs"\n'
    )


def container_name(prefix: str, instance_id: str) -> str:
    """The container's name: ``<prefix><instance_id>``; raises InvalidInput for a name Podman refuses."""
    name = prefix + instance_id
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"'{name}' cannot name a container", "instance ids are like 'web-d12-1'")
    return name


# -- environment --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvPlan:
    """How each variable travels: in the env file, or by name from Podman's own environment."""

    file_text: str  # KEY=VALUE lines for --env-file
    by_name: Mapping[str, str] = field(default_factory=dict)  # --env KEY, value in podman's env


def plan_env(env: Mapping[str, str]) -> EnvPlan:
    """Split ``env`` between the env file and by-name passing; raises InvalidInput for what neither carries."""
    lines: list[str] = []
    by_name: dict[str, str] = {}
    for key in sorted(env):
        value = env[key]
        if not key or "=" in key or "\0" in key or any(c.isspace() for c in key):
            raise InvalidInput(f"environment variable name {key!r} cannot be passed to a container")
        if "\0" in value:
            raise InvalidInput(f"environment variable {key} holds a NUL byte, which no process environment can carry")
        if "\n" in value or "\r" in value:  # the env-file format is one line per variable
            if PODMAN_OWN_ENV.fullmatch(key):
                raise InvalidInput(
                    f"environment variable {key} has a multi-line value, which cannot be passed to a container",
                    "use a single-line value",
                )
            by_name[key] = value
        else:
            lines.append(f"{key}={value}\n")
    return EnvPlan("".join(lines), by_name)


def container_env(spec: InstanceSpec) -> dict[str, str]:
    """The environment the app sees: ``spec.env`` with PORT set to the port it listens on inside."""
    env = dict(spec.env)
    if spec.port is not None:
        env["PORT"] = str(spec.container_port or DEFAULT_CONTAINER_PORT)
    return env


# -- argv ---------------------------------------------------------------------------------------
def parse_command(command: str) -> list[str]:
    """A ``dockerCommand`` as the argv that replaces the image's CMD (split like a shell, never run by one)."""
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise InvalidInput(f"cannot split the command {command!r}: {exc}", "check its quotes") from None


def build_run_argv(
    spec: InstanceSpec,
    *,
    name: str,
    owner: str,
    env_file: str,
    by_name: Iterable[str] = (),
) -> list[str]:
    """``podman run -d`` for an instance: published on 127.0.0.1 only, output passed straight through
    to the caller's stdout (the instance's log file), capped, labelled, never pulled implicitly; a
    leftover container of the same name (a daemon died mid-restart) is replaced."""
    if not spec.image:
        raise InvalidInput(f"instance {spec.instance_id} has no image to run")
    argv = ["podman", "run", "--detach", "--replace", "--name", name, "--pull", "never", "--log-driver", "passthrough"]
    argv += _labels(owner, spec)
    argv += ["--env-file", env_file]
    for key in sorted(by_name):
        argv += ["--env", key]
    if spec.port is not None:
        argv += ["--publish", f"127.0.0.1:{spec.port}:{spec.container_port or DEFAULT_CONTAINER_PORT}"]
    argv += _limits(spec.memory_limit_mb, spec.cpus)
    argv += _volumes(spec.volumes)
    argv += ["--stop-timeout", str(max(0, round(spec.shutdown_delay_s)))]
    argv.append(spec.image)
    if spec.command:
        argv += parse_command(spec.command)
    return argv


def build_job_argv(
    image: str,
    command: str,
    *,
    name: str,
    owner: str,
    env_file: str,
    by_name: Iterable[str] = (),
    memory_limit_mb: int | None = None,
    cpus: float | None = None,
    volumes: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """``podman create --rm`` of a one-off shell command (pre-deploy, cron) in ``image``; the env file
    is read here, so it can go before the command runs (``build_attach_argv``)."""
    argv = ["podman", "create", "--rm", "--name", name, "--pull", "never", "--label", f"{LABEL_OWNER}={owner}"]
    argv += ["--env-file", env_file]
    for key in sorted(by_name):
        argv += ["--env", key]
    argv += _limits(memory_limit_mb, cpus)
    argv += _volumes(volumes)
    return [*argv, "--entrypoint", "/bin/sh", image, "-c", command]


def build_attach_argv(name: str) -> list[str]:
    """Start a created container and stream its output; exits with the container's exit code."""
    return ["podman", "start", "--attach", name]


def build_inspect_argv(name: str) -> list[str]:
    """``podman container inspect`` of one container, as JSON."""
    return ["podman", "container", "inspect", "--format", "json", name]


def build_stop_argv(name: str, timeout_s: float) -> list[str]:
    """SIGTERM (the image's stop signal), SIGKILL after ``timeout_s``; fine when already stopped."""
    return ["podman", "stop", "--ignore", "--time", str(max(0, round(timeout_s))), name]


def build_rm_argv(name: str) -> list[str]:
    """Remove a container, killing it first if it still runs; fine when it does not exist."""
    return ["podman", "rm", "--force", "--ignore", "--time", "0", name]


def build_kill_argv(name: str, sig: int) -> list[str]:
    """Send signal number ``sig`` to the container's main process."""
    return ["podman", "kill", "--signal", str(int(sig)), name]


def build_ps_argv(owner: str) -> list[str]:
    """Every container (running or not) this slipstream installation made, as JSON."""
    return ["podman", "ps", "--all", "--format", "json", "--filter", f"label={LABEL_OWNER}={owner}"]


def _labels(owner: str, spec: InstanceSpec) -> list[str]:
    labels = {
        LABEL_OWNER: owner,
        LABEL_INSTANCE: spec.instance_id,
        LABEL_SERVICE: spec.service,
        LABEL_DEPLOY: str(spec.deploy_id),
    }
    return [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]


def _limits(memory_limit_mb: int | None, cpus: float | None) -> list[str]:
    argv: list[str] = []
    if memory_limit_mb:
        # memory-swap equal to memory: no swap on top of the cap, as on Render
        argv += ["--memory", f"{int(memory_limit_mb)}m", "--memory-swap", f"{int(memory_limit_mb)}m"]
    if cpus:
        argv += ["--cpus", f"{cpus:g}"]
    return argv


def _volumes(volumes: tuple[tuple[str, str], ...]) -> list[str]:
    argv: list[str] = []
    for host, inside in volumes:
        if not PurePosixPath(host).is_absolute() or not PurePosixPath(inside).is_absolute():
            raise InvalidInput(f"volume {host}:{inside} needs two absolute paths", "check the disk's mountPath")
        if ":" in host or ":" in inside or "," in host or "," in inside:
            raise InvalidInput(f"volume {host}:{inside}: paths with ':' or ',' cannot be mounted")
        argv += ["--volume", f"{host}:{inside}"]
    return argv


# -- parsing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerInfo:
    """What slipstream reads from ``podman container inspect``."""

    id: str
    name: str
    running: bool
    pid: int | None  # host pid of the container's main process while it runs
    exit_code: int | None
    labels: Mapping[str, str]
    image: str


def parse_inspect(text: str) -> ContainerInfo | None:
    """The first container of ``podman container inspect --format json`` output, or None when empty."""
    data: Any = json.loads(text or "[]")
    if not data:
        return None
    c = data[0]
    state = c.get("State") or {}
    running = bool(state.get("Running"))
    pid = int(state.get("Pid") or 0)
    return ContainerInfo(
        id=str(c.get("Id", "")),
        name=str(c.get("Name", "")),
        running=running,
        pid=pid if running and pid > 0 else None,
        exit_code=None if running else int(state.get("ExitCode", 0)),
        labels=dict((c.get("Config") or {}).get("Labels") or {}),
        image=str(c.get("ImageName") or c.get("Image") or ""),
    )


def parse_ps(text: str) -> list[tuple[str, Mapping[str, str], bool]]:
    """(name, labels, running) of each container in ``podman ps --format json`` output."""
    data: Any = json.loads(text or "[]")
    out: list[tuple[str, Mapping[str, str], bool]] = []
    for c in data or []:
        names = c.get("Names") or [""]
        out.append((str(names[0]), dict(c.get("Labels") or {}), str(c.get("State", "")) == "running"))
    return out


def memory_cgroup_of(proc_cgroup: str) -> str | None:
    """The memory cgroup path (cgroup v1 ``memory`` line, else the v2 ``0::`` line) of /proc/PID/cgroup."""
    v2 = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "memory" in parts[1].split(","):
            return parts[2]
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
    return v2


def parse_oom_kills(text: str) -> int:
    """The ``oom_kill`` count of a v1 ``memory.oom_control`` or v2 ``memory.events`` file (0 when absent)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0
