"""Pure helpers for image builds: where the Dockerfile and context are, image names, ``podman`` argv
lists for build/pull/inspect/untag, and the parsers and decisions that go with them.

Render semantics kept here: ``dockerfilePath`` defaults to ``./Dockerfile`` and ``dockerContext``
to ``.``, both relative to ``rootDir`` (the repository root without one); the service's
environment variables are the build's arguments (a Dockerfile sees them after ``ARG NAME``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slipstream.errors import InvalidInput
from slipstream.runtime.podman_commands import PODMAN_OWN_ENV

IMAGE_REPO = "localhost/slipstream"
BASE_IMAGE = "localhost/slipstream-base:busybox"
LABEL_SERVICE = "io.slipstream.service"
LABEL_BUILD = "io.slipstream.build"
_REPO_PART = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG = re.compile(r"^b(\d+)$")


@dataclass(frozen=True)
class DockerPaths:
    """The Dockerfile and the build context of one build, inside its source tree."""

    dockerfile: Path
    context: Path


def resolve_docker_paths(
    source_dir: Path, root_dir: str | None, dockerfile_path: str | None, docker_context: str | None
) -> DockerPaths:
    """Resolve ``dockerfilePath``/``dockerContext`` under ``rootDir``; raises InvalidInput for paths
    that leave the source tree (checked on the names here, on symlinks by the caller)."""
    base = source_dir / _relative("rootDir", root_dir or ".")
    dockerfile = base / _relative("dockerfilePath", dockerfile_path or "./Dockerfile")
    context = base / _relative("dockerContext", docker_context or ".")
    return DockerPaths(dockerfile, context)


def _relative(field: str, value: str) -> PurePosixPath:
    path = PurePosixPath(value.strip())
    if "\0" in value or path.is_absolute() or ".." in path.parts:
        raise InvalidInput(
            f"{field} '{value}' must be a relative path inside the repository", "use a path like './Dockerfile'"
        )
    return path


def image_repo(service: str) -> str:
    """``localhost/slipstream/<service>``: image names are lower case, so the service name is lowered."""
    name = service.lower()
    if not _REPO_PART.fullmatch(name):
        raise InvalidInput(
            f"service name '{service}' cannot name an image", "use letters, digits and single '-', '_' or '.'"
        )
    return f"{IMAGE_REPO}/{name}"


def image_tag(service: str, build_id: int) -> str:
    """The image a build produces: ``localhost/slipstream/<service>:b<build_id>``."""
    return f"{image_repo(service)}:b{int(build_id)}"


@dataclass(frozen=True)
class BuildArgs:
    """Which environment variables become build arguments (values travel in podman's environment)."""

    names: tuple[str, ...]
    env: Mapping[str, str]
    left_out: tuple[str, ...]  # names podman reads itself: never passed into its environment


def plan_build_args(env: Mapping[str, str]) -> BuildArgs:
    """Every variable becomes ``--build-arg NAME`` (no value in argv), except names podman itself reads."""
    names: list[str] = []
    left_out: list[str] = []
    for key in sorted(env):
        if not key or "=" in key or "\0" in key or "\0" in env[key] or any(c.isspace() for c in key):
            raise InvalidInput(f"environment variable {key!r} cannot be a build argument")
        (left_out if PODMAN_OWN_ENV.fullmatch(key) else names).append(key)
    return BuildArgs(tuple(names), {k: env[k] for k in names}, tuple(left_out))


def build_build_argv(
    tag: str, paths: DockerPaths, arg_names: Iterable[str], labels: Mapping[str, str] | None = None
) -> list[str]:
    """``podman build``: layers cached in Podman's storage and reused by the next build (``--layers``)."""
    argv = ["podman", "build", "--layers", "--tag", tag, "--file", str(paths.dockerfile)]
    for key, value in sorted((labels or {}).items()):
        argv += ["--label", f"{key}={value}"]
    for name in arg_names:
        argv += ["--build-arg", name]
    return [*argv, str(paths.context)]


def build_image_inspect_argv(ref: str) -> list[str]:
    """``podman image inspect`` of one image, as JSON."""
    return ["podman", "image", "inspect", "--format", "json", ref]


def build_pull_argv(ref: str) -> list[str]:
    """``podman pull`` of an ``image:`` service's reference (needs its registry to be reachable)."""
    return ["podman", "pull", "--quiet", ref]


def build_images_argv(repo: str) -> list[str]:
    """Every image of ``repo`` (all its tags), as JSON."""
    return ["podman", "images", "--format", "json", "--filter", f"reference={repo}"]


def build_untag_argv(refs: Sequence[str]) -> list[str]:
    """Remove image references; layers shared with images still tagged stay."""
    return ["podman", "image", "rm", *refs]


def build_import_argv(tarball: Path, ref: str) -> list[str]:
    """``podman import`` of a root filesystem tarball as ``ref``, with a PATH and a shell as CMD."""
    return [
        "podman",
        "import",
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change",
        'CMD ["/bin/sh"]',
        str(tarball),
        ref,
    ]


def build_image_exists_argv(ref: str) -> list[str]:
    """Exit 0 when ``ref`` is in local storage, 1 when not."""
    return ["podman", "image", "exists", ref]


def pin_reference(inspect_json: str, ref: str) -> str:
    """The immutable reference an image was resolved to: ``repo@sha256:…`` from its RepoDigests for
    the repository ``ref`` names, else its image id (``sha256:…``)."""
    data: Any = json.loads(inspect_json or "[]")
    if not data:
        raise InvalidInput(f"image {ref} is not in local storage")
    image = data[0]
    repo = _repository(ref)
    for digest_ref in image.get("RepoDigests") or []:
        if str(digest_ref).split("@", 1)[0] == repo:
            return str(digest_ref)
    return "sha256:" + str(image["Id"]).removeprefix("sha256:")


def parse_image_id(inspect_json: str) -> str:
    """``sha256:<id>`` of the image in ``podman image inspect --format json`` output."""
    data: Any = json.loads(inspect_json or "[]")
    if not data:
        raise InvalidInput("podman image inspect returned no image")
    return "sha256:" + str(data[0]["Id"]).removeprefix("sha256:")


def _repository(ref: str) -> str:
    """``ref`` without tag or digest, with Podman's default ``docker.io/library`` spelled out."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def parse_build_tags(images_json: str, repo: str) -> dict[int, str]:
    """Build id -> reference of each ``<repo>:b<id>`` tag in ``podman images --format json`` output."""
    data: Any = json.loads(images_json or "[]")
    tags: dict[int, str] = {}
    for image in data or []:
        for name in image.get("Names") or []:
            base, _, tag = str(name).rpartition(":")
            match = _TAG.fullmatch(tag)
            if base == repo and match:
                tags[int(match.group(1))] = str(name)
    return tags


def plan_prune(tags: Mapping[int, str], keep: int, in_use: Iterable[str] = ()) -> list[str]:
    """The references to remove: all but the newest ``keep`` builds and the ones in use."""
    if keep < 1:
        raise InvalidInput(f"keep must be at least 1 (got {keep})")
    used = set(in_use)
    newest = sorted(tags, reverse=True)[:keep]
    return [tags[b] for b in sorted(tags) if b not in newest and tags[b] not in used]


def busybox_links(list_full: str) -> list[str]:
    """Applet paths (``usr/bin/wget``…) from ``busybox --list-full`` output, checked to stay relative."""
    links = []
    for line in list_full.splitlines():
        path = PurePosixPath(line.strip())
        if not line.strip() or path.is_absolute() or ".." in path.parts or path.as_posix() == "bin/busybox":
            continue
        links.append(path.as_posix())
    return links
