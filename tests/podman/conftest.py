"""Fixtures for tests against real Podman: one PodmanCli per session under a temp directory (its
own containers.conf and owner label), a unique container-name prefix and service names, the busybox
base image, and a cleanup that removes every container and image the session made.

Modules that need Podman call ``need_podman()`` at import; the pure tests here run anywhere.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.builds.docker import DockerBuilder, DockerBuildSpec, ImageBuild
from slipstream.builds.docker_base import ensure_busybox_base
from slipstream.builds.docker_commands import build_untag_argv, image_repo
from slipstream.runtime.podman_cli import PodmanCli
from slipstream.runtime.podman_commands import build_ps_argv, build_rm_argv, parse_ps

REAL = {"test_podman_driver.py", "test_docker_build.py"}
SESSION = uuid.uuid4().hex[:6]
PREFIX = f"sliptest-{SESSION}-"

# A web app in busybox: httpd on $PORT, leaves on SIGTERM (a shell as PID 1 only dies of signals it traps).
APP_SH = """\
trap 'echo "got TERM"; exit 0' TERM
echo "listening on $PORT as $GREETING"
httpd -f -p "$PORT" -h /www &
wait $!
"""
DOCKERFILE = """\
FROM localhost/slipstream-base:busybox
ARG GREETING=nobody
RUN mkdir -p /www && echo "hello from $GREETING" > /www/index.html
COPY app.sh /app.sh
CMD ["/bin/sh", "/app.sh"]
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).name in REAL:
            item.add_marker(pytest.mark.real)


def need_podman() -> None:
    """Skip the calling test module when podman is not installed."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/install.sh installs it)", allow_module_level=True)


def service_name(name: str) -> str:
    """A service name no other test session uses (image repositories are machine-wide)."""
    return f"t{SESSION}-{name}"


def http_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError as exc:
        return 0, str(exc)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanCli]:
    """A PodmanCli for this session; afterwards its containers and test images are removed."""
    cli = PodmanCli(tmp_path_factory.mktemp("podman"))
    try:
        yield cli
    finally:
        for name, _labels, _running in parse_ps(cli.run(build_ps_argv(cli.owner), check=False).stdout or "[]"):
            cli.run(build_rm_argv(name), check=False)
        repo_prefix = image_repo(service_name("x"))[: -len("x")]
        listed = cli.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], check=False).stdout
        mine = [ref for ref in listed.split() if ref.startswith(repo_prefix)]
        if mine:
            cli.run(build_untag_argv(mine), check=False)


@pytest.fixture(scope="session")
def base_image(podman: PodmanCli) -> str:
    return ensure_busybox_base(podman)


@pytest.fixture(scope="session")
def builder(podman: PodmanCli) -> DockerBuilder:
    return DockerBuilder(podman, timeout_s=300)


def write_app(directory: Path, dockerfile: str = DOCKERFILE, app: str = APP_SH) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    (directory / "app.sh").write_text(app)
    return directory


@pytest.fixture(scope="session")
def web_image(builder: DockerBuilder, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> ImageBuild:
    """The test web app, built once per session."""
    src = write_app(tmp_path_factory.mktemp("webapp"))
    spec = DockerBuildSpec(service_name("web"), 1, src, src.parent / "web-build.log", build_args={"GREETING": "tests"})
    return builder.build(spec)
