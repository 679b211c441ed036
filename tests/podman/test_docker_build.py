"""DockerBuilder and the base image against real Podman."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slipstream.builds.docker import DockerBuilder, DockerBuildSpec, ImageBuild
from slipstream.builds.docker_base import ensure_busybox_base
from slipstream.builds.docker_commands import build_image_inspect_argv
from slipstream.builds.model import BuildFailed
from slipstream.errors import InvalidInput
from slipstream.runtime.podman_cli import PodmanCli

from .conftest import DOCKERFILE, need_podman, service_name, write_app

need_podman()


def test_base_image_is_made_once_and_has_busybox(podman: PodmanCli, base_image: str) -> None:
    started = time.monotonic()
    assert ensure_busybox_base(podman) == base_image  # already there: reused
    assert time.monotonic() - started < 2
    res = podman.run(
        ["podman", "run", "--rm", "--pull", "never", base_image, "sh", "-c", "httpd --help 2>&1 | head -1; ls -ld /tmp"]
    )
    assert "BusyBox" in res.stdout and "drwxrwxrwt" in res.stdout


def test_build_reuses_layers_and_logs_each_line(builder: DockerBuilder, base_image: str, tmp_path: Path) -> None:
    service = service_name("cache")
    # a RUN step that takes a while, so a cached rebuild is clearly faster
    dockerfile = DOCKERFILE.replace("COPY app.sh", f"RUN sleep 2 && echo {tmp_path.name} > /stamp\nCOPY app.sh")
    src = write_app(tmp_path / "src", dockerfile)
    log = tmp_path / "build.log"
    lines: list[str] = []

    first = builder.build(DockerBuildSpec(service, 1, src, log, build_args={"GREETING": "a"}), lines.append)
    second = builder.build(DockerBuildSpec(service, 2, src, tmp_path / "build2.log", build_args={"GREETING": "a"}))

    assert first.image == f"localhost/slipstream/{service}:b1" and first.image_id.startswith("sha256:")
    assert second.image == f"localhost/slipstream/{service}:b2"
    cached = (tmp_path / "build2.log").read_text()
    assert cached.count("--> Using cache") == 5  # ARG, RUN, RUN, COPY, CMD: all but the per-build labels
    assert "RUN sleep 2" in cached and second.image_id != first.image_id  # labels name the build
    assert second.duration_s < first.duration_s - 1.5, (first.duration_s, second.duration_s)
    text = log.read_text()
    assert lines[0] == f"==> Building image {first.image}" and lines[0] in text
    assert any("STEP 1/" in line for line in lines) and "STEP 1/" in text
    assert builder.images(service) == {1: first.image, 2: second.image}


def test_root_dir_dockerfile_path_and_context(builder: DockerBuilder, base_image: str, tmp_path: Path) -> None:
    service = service_name("mono")
    app = write_app(tmp_path / "repo" / "services" / "api" / "ctx")
    (app / "Dockerfile").rename(app.parent / "Dockerfile.prod")
    spec = DockerBuildSpec(
        service, 1, tmp_path / "repo", tmp_path / "b.log",
        root_dir="services/api", dockerfile_path="./Dockerfile.prod", docker_context="ctx",
    )  # fmt: skip
    assert builder.build(spec).image.endswith(":b1")
    missing = DockerBuildSpec(service, 2, tmp_path / "repo", tmp_path / "b.log", root_dir="services/api")
    with pytest.raises(InvalidInput, match="no Dockerfile at services/api/Dockerfile"):
        builder.build(missing)


def test_build_args_are_visible_only_to_the_dockerfile(
    builder: DockerBuilder, web_image: ImageBuild, podman: PodmanCli
) -> None:
    # web_image was built with GREETING=tests: the RUN step saw it, the argv never held it
    res = podman.run(["podman", "run", "--rm", "--pull", "never", web_image.image, "cat", "/www/index.html"])
    assert res.stdout == "hello from tests\n"
    history = podman.run(["podman", "history", "--no-trunc", "--format", "{{.CreatedBy}}", web_image.image]).stdout
    assert "GREETING=tests" in history  # as with Docker: a build argument a RUN step uses is in the history


def test_a_failed_build_says_why_with_the_last_lines(builder: DockerBuilder, base_image: str, tmp_path: Path) -> None:
    dockerfile = "FROM localhost/slipstream-base:busybox\nRUN echo about to fail && exit 7\n"
    src = write_app(tmp_path / "src", dockerfile)
    with pytest.raises(BuildFailed) as info:
        builder.build(DockerBuildSpec(service_name("broken"), 1, src, tmp_path / "build.log"))
    assert info.value.message == "build failed: podman build exited with 7"  # the RUN step's status
    assert "about to fail" in info.value.log_tail
    assert any("exit status 7" in line for line in info.value.log_tail), info.value.log_tail
    assert str(tmp_path / "build.log") in (info.value.hint or "")


def test_prune_keeps_the_newest_images(
    builder: DockerBuilder, base_image: str, tmp_path: Path, podman: PodmanCli
) -> None:
    service = service_name("prune")
    src = write_app(tmp_path / "src")
    for build_id in (1, 2, 3, 4):
        builder.build(DockerBuildSpec(service, build_id, src, tmp_path / "b.log"))
    in_use = f"localhost/slipstream/{service}:b1"
    removed = builder.prune(service, keep=2, in_use=[in_use])
    assert removed == [f"localhost/slipstream/{service}:b2"]
    assert sorted(builder.images(service)) == [1, 3, 4]


def test_pin_resolves_a_local_image_to_its_digest(builder: DockerBuilder, base_image: str, podman: PodmanCli) -> None:
    pinned = builder.pin(base_image)
    assert pinned.startswith("localhost/slipstream-base@sha256:")
    res = podman.run(build_image_inspect_argv(pinned))
    assert '"Id"' in res.stdout  # the pin names the same image
    with pytest.raises(InvalidInput, match="not in local storage"):
        builder.pin("localhost/slipstream/none-such:b1")
    with pytest.raises(InvalidInput, match="is not an image reference"):
        builder.pin("--all")
