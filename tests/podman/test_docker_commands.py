"""The pure side of image builds: paths under rootDir, image names, build args, pins, pruning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slipstream.builds.docker_commands import (
    DockerPaths,
    build_build_argv,
    busybox_links,
    image_tag,
    parse_build_tags,
    pin_reference,
    plan_build_args,
    plan_prune,
    resolve_docker_paths,
)
from slipstream.errors import InvalidInput

SRC = Path("/b/web/7/src")


@pytest.mark.parametrize(
    ("root_dir", "dockerfile", "context", "expected"),
    [
        (None, None, None, (SRC / "Dockerfile", SRC)),
        ("services/api", None, None, (SRC / "services/api/Dockerfile", SRC / "services/api")),
        ("api", "./docker/Dockerfile.prod", "..x", (SRC / "api/docker/Dockerfile.prod", SRC / "api/..x")),
        ("", "Dockerfile", ".", (SRC / "Dockerfile", SRC)),
    ],
)
def test_docker_paths_are_relative_to_root_dir(
    root_dir: str | None, dockerfile: str | None, context: str | None, expected: tuple[Path, Path]
) -> None:
    assert resolve_docker_paths(SRC, root_dir, dockerfile, context) == DockerPaths(*expected)


@pytest.mark.parametrize(
    ("root_dir", "dockerfile", "context", "message"),
    [
        ("../x", None, None, "rootDir '../x' must be a relative path"),
        (None, "/etc/passwd", None, "dockerfilePath '/etc/passwd' must be a relative path"),
        (None, None, "a/../../b", "dockerContext 'a/../../b' must be a relative path"),
    ],
)
def test_docker_paths_stay_inside(
    root_dir: str | None, dockerfile: str | None, context: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_docker_paths(SRC, root_dir, dockerfile, context)


def test_image_tags() -> None:
    assert image_tag("web", 12) == "localhost/slipstream/web:b12"
    assert image_tag("My-API", 1) == "localhost/slipstream/my-api:b1"
    for bad in ("a b", "-x", "", "a/b", "x--y"):
        with pytest.raises(InvalidInput, match="cannot name an image"):
            image_tag(bad, 1)


def test_build_args_travel_by_name_only() -> None:
    args = plan_build_args({"DB_URL": "postgres://u:p@h/db", "PATH": "/x", "GOOGLE_KEY": "k", "HOME": "/h"})
    assert args.names == ("DB_URL", "GOOGLE_KEY")
    assert args.left_out == ("HOME", "PATH")
    argv = build_build_argv("t:b1", DockerPaths(SRC / "Dockerfile", SRC), args.names, {"l": "v"})
    assert argv == [
        "podman", "build", "--layers", "--tag", "t:b1", "--file", f"{SRC}/Dockerfile",
        "--label", "l=v", "--build-arg", "DB_URL", "--build-arg", "GOOGLE_KEY", str(SRC),
    ]  # fmt: skip
    assert "postgres://u:p@h/db" not in " ".join(argv)
    with pytest.raises(InvalidInput):
        plan_build_args({"A B": "1"})


def test_pin_prefers_the_repo_digest_then_the_id() -> None:
    inspect = json.dumps(
        [{"Id": "96052b70", "RepoDigests": ["localhost/bb@sha256:442f", "docker.io/library/redis@sha256:77"]}]
    )
    assert pin_reference(inspect, "localhost/bb:latest") == "localhost/bb@sha256:442f"
    assert pin_reference(inspect, "redis:7") == "docker.io/library/redis@sha256:77"
    assert pin_reference(inspect, "docker.io/library/redis") == "docker.io/library/redis@sha256:77"
    assert pin_reference(inspect, "ghcr.io/x/y:1") == "sha256:96052b70"
    assert pin_reference(json.dumps([{"Id": "sha256:ab"}]), "x") == "sha256:ab"
    with pytest.raises(InvalidInput, match="not in local storage"):
        pin_reference("[]", "x")


def test_prune_keeps_the_newest_and_the_ones_in_use() -> None:
    images = json.dumps(
        [
            {"Names": ["localhost/slipstream/web:b1"]},
            {"Names": ["localhost/slipstream/web:b3", "localhost/slipstream/web:latest"]},
            {"Names": ["localhost/slipstream/web:b2"]},
            {"Names": ["localhost/slipstream/webx:b9"]},
            {"Names": ["localhost/slipstream/web:b4"]},
        ]
    )
    tags = parse_build_tags(images, "localhost/slipstream/web")
    assert sorted(tags) == [1, 2, 3, 4]
    assert plan_prune(tags, keep=2) == ["localhost/slipstream/web:b1", "localhost/slipstream/web:b2"]
    assert plan_prune(tags, keep=2, in_use=["localhost/slipstream/web:b1"]) == ["localhost/slipstream/web:b2"]
    with pytest.raises(InvalidInput):
        plan_prune(tags, keep=0)


def test_busybox_links_stay_relative() -> None:
    assert busybox_links("usr/bin/[\nbin/sh\nbin/busybox\n/etc/x\n../up\n\nsbin/init\n") == [
        "usr/bin/[",
        "bin/sh",
        "sbin/init",
    ]
