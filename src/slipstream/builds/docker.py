"""Container images for ``runtime: docker`` and ``image:`` services, built and kept with Podman.

Lifecycle of ``DockerBuilder.build(spec)`` (one build per service at a time):

1. The source is already materialised (the ``Builder`` exports the commit or snapshots the
   directory into ``builds/<service>/<id>/src``); ``dockerfilePath`` and ``dockerContext`` are
   resolved under ``rootDir`` and must stay inside that tree.
2. ``podman build --layers`` tags ``localhost/slipstream/<service>:b<build_id>``. Layers stay in
   Podman's storage, so the next build of the service reuses every unchanged step. The service's
   environment variables are build arguments by name only (values in podman's environment, never
   in argv); as with Docker, a value a ``RUN`` step uses is recorded in the image history.
3. Every output line goes to the build log and ``on_output``; a failure raises ``BuildFailed``
   with the last 20 lines.
4. ``prune`` keeps the newest N images of a service (and any in use); ``pin`` resolves an
   ``image:`` service's reference (pulled first when asked) to ``repo@sha256:…`` or the image id,
   so every instance of a deploy runs the very same image.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slipstream.builds.docker_commands import (
    BASE_IMAGE,
    LABEL_BUILD,
    LABEL_SERVICE,
    build_build_argv,
    build_image_inspect_argv,
    build_images_argv,
    build_pull_argv,
    build_untag_argv,
    image_repo,
    image_tag,
    parse_build_tags,
    parse_image_id,
    pin_reference,
    plan_build_args,
    plan_prune,
    resolve_docker_paths,
)
from slipstream.builds.model import BuildFailed
from slipstream.errors import CommandFailed, InvalidInput
from slipstream.runtime.podman_cli import TIMEOUT_EXIT_CODE, PodmanCli

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class DockerBuildSpec:
    """One image build of one service from an already materialised source tree."""

    service: str
    build_id: int
    source_dir: Path  # the repository (or snapshot) root
    log_path: Path  # appended to (the build's build.log)
    root_dir: str | None = None
    dockerfile_path: str | None = None  # default ./Dockerfile, relative to rootDir
    docker_context: str | None = None  # default ., relative to rootDir
    build_args: Mapping[str, str] = field(default_factory=dict)  # the service's env vars


@dataclass(frozen=True)
class ImageBuild:
    """A finished image build."""

    service: str
    build_id: int
    image: str  # localhost/slipstream/<service>:b<id>
    image_id: str  # sha256:…, what the tag pointed at when the build finished
    duration_s: float
    log_path: Path


class DockerBuilder:
    """Builds, pins and prunes images with one ``PodmanCli``."""

    def __init__(self, podman: PodmanCli, *, timeout_s: float | None = 3600.0) -> None:
        self.podman = podman
        self.timeout_s = timeout_s
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def build(self, spec: DockerBuildSpec, on_output: Callable[[str], None] | None = None) -> ImageBuild:
        """Build the service's Dockerfile; raises InvalidInput for bad paths, BuildFailed when podman fails."""
        paths = resolve_docker_paths(spec.source_dir, spec.root_dir, spec.dockerfile_path, spec.docker_context)
        top = spec.source_dir.resolve()
        for what, path in (("dockerfilePath", paths.dockerfile), ("dockerContext", paths.context)):
            if not path.resolve().is_relative_to(top):
                raise InvalidInput(f"{what} leads outside the source tree (a symlink?)")
        if not paths.dockerfile.is_file():
            raise InvalidInput(
                f"no Dockerfile at {paths.dockerfile.relative_to(spec.source_dir)}",
                "set dockerfilePath in the blueprint (relative to rootDir)",
            )
        if not paths.context.is_dir():
            raise InvalidInput(f"dockerContext {paths.context.relative_to(spec.source_dir)} is not a directory")
        if BASE_IMAGE in paths.dockerfile.read_text(errors="replace"):
            from slipstream.builds.docker_base import ensure_busybox_base

            ensure_busybox_base(self.podman)  # the local base image, made once without a registry
        tag = image_tag(spec.service, spec.build_id)
        args = plan_build_args(spec.build_args)
        labels = {LABEL_SERVICE: spec.service, LABEL_BUILD: str(spec.build_id)}
        with self._lock_for(spec.service):
            return self._build(
                spec, tag, build_build_argv(tag, paths, args.names, labels), args.env, args.left_out, on_output
            )

    def pin(self, ref: str, *, pull: bool = False) -> str:
        """The immutable reference ``ref`` resolves to (``repo@sha256:…``, else ``sha256:<id>``).

        With ``pull`` the image is fetched first (``podman pull``: needs the registry, which these
        test machines cannot reach); without it, the image must already be in local storage."""
        if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
            raise InvalidInput(f"'{ref}' is not an image reference", "use a reference like 'docker.io/library/redis:7'")
        if pull:
            res = self.podman.run(build_pull_argv(ref), timeout=1800, check=False)
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or ["no output"])[-1]
                raise CommandFailed(
                    f"could not pull {ref}: {last}", "check the image URL and that its registry is reachable"
                )
        res = self.podman.run(build_image_inspect_argv(ref), check=False)
        if res.returncode != 0:
            raise InvalidInput(f"image {ref} is not in local storage", "pull it first")
        return pin_reference(res.stdout, ref)

    def images(self, service: str) -> dict[int, str]:
        """Build id -> image reference of each image of ``service`` in local storage."""
        repo = image_repo(service)
        return parse_build_tags(self.podman.run(build_images_argv(repo)).stdout, repo)

    def prune(self, service: str, keep: int = 5, in_use: Iterable[str] = ()) -> list[str]:
        """Untag all but the newest ``keep`` images of ``service`` and those ``in_use``; the refs removed
        (an image a container still uses stays: podman refuses, and it is skipped)."""
        removed = []
        for ref in plan_prune(self.images(service), keep, in_use):
            if self.podman.run(build_untag_argv([ref]), check=False).returncode == 0:
                removed.append(ref)
        return removed

    # -- steps ---------------------------------------------------------------------------------
    def _build(
        self,
        spec: DockerBuildSpec,
        tag: str,
        argv: list[str],
        arg_env: Mapping[str, str],
        left_out: tuple[str, ...],
        on_output: Callable[[str], None] | None,
    ) -> ImageBuild:
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

        def say(line: str) -> None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(spec.log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")
            if on_output is not None:
                on_output(line)

        def output(line: str) -> None:
            tail.append(line)
            if on_output is not None:
                on_output(line)

        say(f"==> Building image {tag}")
        if left_out:
            say(f"==> Not passed as build arguments (podman reads these itself): {', '.join(left_out)}")
        code = self.podman.stream(argv, spec.log_path, output, self.timeout_s, extra_env=arg_env)
        if code != 0:
            if code == TIMEOUT_EXIT_CODE and self.timeout_s is not None:
                message = f"build failed: podman build did not finish within {self.timeout_s:g} s"
            else:
                message = f"build failed: podman build exited with {code}"
            say(f"==> {message}")
            raise BuildFailed(message, list(tail), f"the full log is {spec.log_path}")
        res = self.podman.run(build_image_inspect_argv(tag))
        image_id = parse_image_id(res.stdout)
        duration = time.monotonic() - started
        say(f"==> Image {tag} ({image_id[:19]}) built in {duration:.1f} s")
        return ImageBuild(spec.service, spec.build_id, tag, image_id, duration, spec.log_path)

    def _lock_for(self, service: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(service, threading.Lock())
