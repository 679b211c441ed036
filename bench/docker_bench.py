"""The docker row (issue #12): a ``runtime: docker`` service deployed beside the native one.

Run against the daemon stand after the native deploys, with the same number of timed deploys:

1. One untimed first deploy (it makes ``localhost/slipstream-base:busybox`` if the machine has
   none, and puts the warm builds' first layers in the cache).
2. Cold builds: deploys whose Dockerfile's first ``RUN`` carries a new stamp, so no layer of the
   Dockerfile is cached (the base image is).
3. Timed deploys, each of a new commit changing ``www/index.html`` (a code change: every layer
   before the last ``COPY`` comes from the cache). Each is timed from ``POST /v1/deploys`` until
   HAProxy serves the new body, and its record gives the daemon's steps. Container start -> first
   200 is the ``start`` step (``podman run``) plus the ``health`` step (until the daemon's first
   passing probe on the container's published port). After each deploy the bench waits for the
   daemon's image pruning (``wait_quiet``): it runs after the record says the deploy finished, and
   the service's next deploy would wait for it in the queue.
4. ``kill -9`` of the container's main process after the last deploys (each a fresh instance, so
   each kill is its first restart) until HAProxy serves it again: the through-HAProxy figure, the
   same measurement as the native restarts.

``cleanup`` untags the bench service's images after the daemon stopped (their layers go with them).
"""

from __future__ import annotations

import shutil
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.daemon_bench import DaemonStand, Timed
from bench.extras_repo import CACHED_STAMP, DOCKER_SERVICE, ExtrasRepo, docker_body
from slipstream.builds.docker_commands import build_images_argv, build_untag_argv, image_repo, parse_build_tags
from slipstream.runtime.podman_cli import PATH as PODMAN_PATH
from slipstream.runtime.podman_cli import PodmanCli

FIRST_DEPLOY_TIMEOUT_S = 300  # may import the base image and build every layer


@dataclass
class DockerRuns:
    """What the docker row measured."""

    first: Timed | None = None
    cold: list[Timed] = field(default_factory=list)
    deploys: list[Timed] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    build_phases: list[list[tuple[str, float]]] = field(default_factory=list)  # per timed deploy


def _step_label(message: str) -> str:
    """'STEP 6/7: LABEL "io.slipstream.build"="3"' -> 'LABEL "io.slipstream.build"' (no run-specific value)."""
    text = message.split(": ", 1)[1] if ": " in message else message
    return text.split("=", 1)[0] if text.startswith("LABEL ") else text


def parse_build_phases(events: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Where one docker build step's time went, from its deploy's events: (phase, ms) in order.

    Phases: the source export and base-image check (``-----> Building`` -> ``==> Building image``),
    podman's start-up (-> ``STEP 1``), each Dockerfile step (``(cached)`` when podman reused its
    layer; slipstream's labels are steps too), and the final commit, tag and inspect (``COMMIT``
    -> ``==> Image ... built``). Empty when the events hold no image build.
    """
    marks: list[tuple[str, float]] = []
    for e in events:
        message, ts = str(e["message"]), float(e["ts"])
        if message.startswith("-----> Building ("):
            marks.append(("export the source, check the base image", ts))
        elif message.startswith("==> Building image"):
            marks.append(("podman build start-up", ts))
        elif message.startswith("STEP "):
            marks.append((_step_label(message), ts))
        elif message.startswith("--> Using cache") and marks and not marks[-1][0].endswith("(cached)"):
            marks[-1] = (marks[-1][0] + " (cached)", marks[-1][1])
        elif message.startswith("COMMIT "):
            marks.append(("commit, tag and inspect the image", ts))
        elif message.startswith("==> Image ") and marks:
            marks.append(("", ts))
            return [(label, (marks[i + 1][1] - t) * 1000) for i, (label, t) in enumerate(marks[:-1])]
    return []


def podman_missing() -> str | None:
    """Why there can be no docker row here, or None."""
    if shutil.which("podman", path=PODMAN_PATH) is None:
        return "podman is not installed ('make install' installs it)"
    return None


def run_docker(stand: DaemonStand, repo: ExtrasRepo, deploys: int, cold: int, restarts: int) -> DockerRuns:
    """Steps 1-4 above; ``restarts`` of the last ``deploys`` are followed by a kill -9."""
    out = DockerRuns()
    out.first = stand.timed_deploy(
        DOCKER_SERVICE, repo.docker_yaml, repo.head(), docker_body("0"), timeout=FIRST_DEPLOY_TIMEOUT_S
    )
    wait_quiet(stand, int(out.first.deploy["id"]))
    for i in range(1, cold + 1):
        version = f"cold{i}"
        sha = repo.commit_docker(version, uuid.uuid4().hex)
        out.cold.append(stand.timed_deploy(DOCKER_SERVICE, repo.docker_yaml, sha, docker_body(version), timeout=120))
        wait_quiet(stand, int(out.cold[-1].deploy["id"]))
    for i in range(1, deploys + 1):
        version = str(i)
        sha = repo.commit_docker(version, CACHED_STAMP)
        timed = stand.timed_deploy(DOCKER_SERVICE, repo.docker_yaml, sha, docker_body(version))
        out.deploys.append(timed)
        out.build_phases.append(parse_build_phases(wait_quiet(stand, int(timed.deploy["id"]))))
        if i > deploys - restarts:
            out.restarts.append(stand.restart(DOCKER_SERVICE))
    return out


def wait_quiet(
    stand: DaemonStand, deploy_id: int, floor: float = 1.0, quiet: float = 0.5, limit: float = 5.0
) -> list[dict[str, Any]]:
    """Wait until a finished deploy's events have stopped for ``quiet`` s, at least ``floor`` s
    (pruning that removes nothing says nothing) and at most ``limit`` s; its events."""
    started = time.monotonic()
    seen, changed = -1, started
    while True:
        events: list[dict[str, Any]] = stand.api("GET", f"/v1/deploys/{deploy_id}/events")["events"]
        now = time.monotonic()
        if len(events) != seen:
            seen, changed = len(events), now
        if (now - started >= floor and now - changed >= quiet) or now - started >= limit:
            return events
        time.sleep(0.1)


def cleanup(home: Path) -> list[str]:
    """Untag the images of the bench's docker service in the stand's Podman storage; the refs removed."""
    if podman_missing() is not None:
        return []
    cli = PodmanCli(home / "podman")
    repo = image_repo(DOCKER_SERVICE)
    listed = cli.run(build_images_argv(repo), check=False)
    refs = sorted(parse_build_tags(listed.stdout, repo).values()) if listed.returncode == 0 else []
    if refs and cli.run(build_untag_argv(refs), check=False).returncode != 0:
        return []
    return refs


def median_phases(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Per phase (in the order phases first appear), the median of its ms over the runs that had it."""
    values: dict[str, list[float]] = {}
    for phases in runs:
        for label, ms in phases:
            values.setdefault(label, []).append(ms)
    return [(label, statistics.median(ms)) for label, ms in values.items()]
