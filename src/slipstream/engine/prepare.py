"""The steps of a deploy before anything starts: provision, build, attach a disk, serve a static
site, snapshot the databases before migrations. Each takes the run and records what it did."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from slipstream.blueprint import Blueprint, BlueprintError, parse_blueprint
from slipstream.builds import BuildSpec
from slipstream.builds.docker import DockerBuildSpec
from slipstream.engine.failures import DeployFailed
from slipstream.engine.planning import Needs, plan_release
from slipstream.engine.release import BuildRef
from slipstream.errors import CommandFailed, InvalidInput, SlipstreamError
from slipstream.logs.model import Source, Stream
from slipstream.osusers import hand_over, user_environment
from slipstream.states import DeployKind, DeployStatus

IMAGES_KEPT = 5  # images of a container service kept for rollbacks (besides the live one)
log = logging.getLogger("slipstream.engine")

if TYPE_CHECKING:
    from slipstream.engine.deployer import DeployRun


class _ParsedBlueprints:
    """The parsed blueprint of each recent (text, file name): an ``apply`` queues one deploy per
    service, each carrying the same blueprint text, and parsing 200 services' text 200 times took
    ~27 ms each, all of it holding the GIL. Models are frozen (pydantic), so deploys share one; a
    lock makes the parallel deploys of one apply wait for the first parse instead of repeating it."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._parsed: dict[tuple[str, str], Blueprint] = {}

    def parse(self, text: str, filename: str) -> Blueprint:
        """``parse_blueprint(text, filename)``, parsed once per distinct pair (the newest ``keep`` kept)."""
        key = (text, filename)
        with self._lock:
            bp = self._parsed.pop(key, None)
            if bp is None:
                bp = parse_blueprint(text, filename=filename)  # a BlueprintError is not kept
            self._parsed[key] = bp  # (re)inserted last: the oldest entry goes first
            while len(self._parsed) > self._keep:
                del self._parsed[next(iter(self._parsed))]
            return bp


_blueprints = _ParsedBlueprints()


def provision(run: DeployRun) -> bool:
    """Create what the release needs (databases, key values, generated values, private
    addresses) and plan it again with the real facts. True when the release changed."""
    src = run.payload.get("_source") or {}
    text = src.get("blueprint_text")
    needs = Needs(**{k: tuple(v) for k, v in (src.get("needs") or {}).items()})
    refresh = run.rec.kind == DeployKind.DEPLOY
    if text is None or run.rec.kind == DeployKind.ROLLBACK or not (needs or refresh):
        return False
    ctx = run.ctx
    started = time.monotonic()
    try:
        bp = _blueprints.parse(text, src.get("blueprint") or "render.yaml")
        if needs:
            run.say(f"-----> Provisioning {needs.describe()}")
        ctx.provisioner.provide(bp, needs, refresh=refresh, say=run.say)
        if not needs:
            return False
        release, still = plan_release(bp, bp.service(run.service), ctx.provisioner.facts(bp, run.service))
    except (SlipstreamError, BlueprintError, KeyError) as exc:
        message = exc.message if isinstance(exc, SlipstreamError) else str(exc)
        raise DeployFailed(DeployStatus.UPDATE_FAILED, f"{message}; the live release keeps serving") from None
    if still:
        raise DeployFailed(DeployStatus.UPDATE_FAILED, f"could not provide {still.describe()}")
    ctx.masker.add(release.env[k] for k in release.secret_keys)
    run.payload = {**release.to_dict(), "_source": {**src, "needs": {}}}
    ctx.store.transition(
        run.id, DeployStatus(run.rec.status), release=run.payload, step=("provision", time.monotonic() - started)
    )
    ctx.store.set_service_env(run.service, release.env)
    return True


def check_free_space(run: DeployRun) -> None:
    """Refuse to build when the state disk has less than SLIPSTREAM_MIN_FREE_MB free: a build
    that fills the disk would take PostgreSQL, the stores and every app's writes down with it."""
    need = run.ctx.settings.min_free_mb
    free = shutil.disk_usage(run.ctx.settings.builds_dir).free // 2**20
    if free < need:
        log.warning("state disk nearly full: %s MB free, a build needs %s MB", free, need)
        raise DeployFailed(
            DeployStatus.BUILD_FAILED,
            f"the state disk ({run.ctx.settings.home}) has {free} MB free, under SLIPSTREAM_MIN_FREE_MB ({need}): "
            "no build started; free space ('slipstream gc' removes old builds) and deploy again",
        )


def build_once(run: DeployRun) -> BuildRef:
    """Build the release from its source (a commit or a directory snapshot); for ``runtime: docker``
    then its image, for ``runtime: image`` pin the image's digest instead."""
    ctx, store = run.ctx, run.ctx.store
    started = time.monotonic()
    check_free_space(run)
    build_id = store.new_build(run.service)
    store.transition(run.id, DeployStatus.BUILDING, build_id=build_id)
    run.say(f"-----> Building ({run.release.runtime}, build {build_id})")
    if run.release.runtime == "image":
        return pin_image(run, build_id, started)
    src = run.payload.get("_source") or {}
    try:
        user = None if run.release.runtime == "docker" else ctx.instances.user_of(run.service)
    except SlipstreamError as exc:
        store.finish_build(build_id, status="failed", duration_s=time.monotonic() - started)
        raise DeployFailed(DeployStatus.BUILD_FAILED, f"{exc}; the live release keeps serving") from None
    spec = BuildSpec(
        service=run.service,
        build_id=build_id,
        source_repo=Path(src["repo"]) if src.get("repo") else None,
        commit=run.rec.commit_sha,
        branch=run.release.branch,
        from_dir=Path(src["from_dir"]) if src.get("from_dir") else None,
        root_dir=run.release.root_dir,
        runtime=run.release.runtime,
        build_command=None if run.release.runtime == "docker" else run.release.build_command,
        env={
            **ctx.base_env,
            **run.release.env,
            "RENDER": "true",
            "RENDER_SERVICE_NAME": run.service,
            "RENDER_GIT_COMMIT": run.rec.commit_sha or "",
            **(user_environment(user) if user is not None else {}),
        },
        user=user,
    )
    image = None
    build_log = ctx.settings.builds_dir / run.service / str(build_id) / "build.log"
    if ctx.logs is not None:
        ctx.logs.watch(build_log, Source(run.service, Stream.BUILD, run.id, build_id=build_id))
    try:
        built = ctx.builder.build(spec, on_output=lambda line: run.say(line, "build"), cancel=run.canceled)
        if run.release.runtime == "docker":
            image = build_image(run, build_id, built.source_dir, built.log_path)
    except SlipstreamError as exc:
        if ctx.logs is not None:
            ctx.logs.retire(build_log)
        store.finish_build(build_id, status="failed", duration_s=time.monotonic() - started)
        run.check_canceled()  # (the build's lines were streamed as they came)
        raise DeployFailed(DeployStatus.BUILD_FAILED, f"{exc.message}; the live release keeps serving") from None
    store.finish_build(
        build_id,
        status="ok",
        commit_sha=built.commit,
        source_dir=str(built.source_dir),
        workdir=str(built.workdir),
        path_prefix=list(built.path_prefix),
        extra_env=dict(built.extra_env),
        log_path=str(built.log_path),
        duration_s=time.monotonic() - started,
        image=image,
    )
    if ctx.logs is not None:
        ctx.logs.retire(build_log)
    store.transition(run.id, DeployStatus.BUILDING, step=("build", time.monotonic() - started), commit_sha=built.commit)
    prefix = () if image else tuple(built.path_prefix)
    return BuildRef(build_id, built.commit, Path(built.workdir), prefix, dict(built.extra_env), image)


def build_image(run: DeployRun, build_id: int, source_dir: Path, log_path: Path) -> str:
    """``podman build`` of the service's Dockerfile (env vars as build args); the image tag."""
    if run.ctx.images is None:
        raise InvalidInput("runtime docker needs Podman, which this machine lacks", "run 'make install'")
    container = run.release.container or {}
    spec = DockerBuildSpec(
        service=run.service,
        build_id=build_id,
        source_dir=source_dir,
        log_path=log_path,
        root_dir=run.release.root_dir,
        dockerfile_path=container.get("dockerfile_path"),
        docker_context=container.get("docker_context"),
        build_args=dict(run.release.env),
    )
    built = run.ctx.images.build(spec, on_output=lambda line: run.say(line, "build"))
    run.say(f"       image {built.image} ({built.image_id[:19]})")
    return built.image


def pin_image(run: DeployRun, build_id: int, started: float) -> BuildRef:
    """An ``image:`` service: pull its image and pin the digest it resolves to now (a rollback runs
    exactly these bytes); without a reachable registry, a copy already in local storage is used."""
    store, images = run.ctx.store, run.ctx.images
    url = str((run.release.container or {}).get("image_url") or "")
    workdir = run.ctx.settings.builds_dir / run.service / str(build_id)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if images is None:
            raise InvalidInput("runtime image needs Podman, which this machine lacks", "run 'make install'")
        try:
            pinned = images.pin(url, pull=True)
        except CommandFailed as exc:
            pinned = images.pin(url, pull=False)  # raises InvalidInput when there is no local copy
            run.say(f"       could not pull ({exc.message}); using the copy in local storage")
    except SlipstreamError as exc:
        store.finish_build(build_id, status="failed", duration_s=time.monotonic() - started)
        raise DeployFailed(DeployStatus.BUILD_FAILED, f"{exc.message}; the live release keeps serving") from None
    run.say(f"       {url} pinned to {pinned}")
    store.finish_build(build_id, status="ok", workdir=str(workdir), duration_s=time.monotonic() - started, image=pinned)
    store.transition(run.id, DeployStatus.BUILDING, step=("build", time.monotonic() - started))
    return BuildRef(build_id, None, workdir, (), {}, pinned)


def prepare_build(run: DeployRun, build: BuildRef) -> None:
    """Per-kind steps after the build: a disk is attached, a static site gets its Caddy config."""
    if run.release.disk:
        attach_disk(run, build)
    static = run.release.static
    if not static:
        return
    from slipstream.static import (
        HEALTH_PATH,
        caddy_command,
        render_caddy_config,
        resolve_publish_dir,
        write_caddy_config,
    )

    try:
        publish = resolve_publish_dir(build.workdir, str(static.get("publish_path") or "."))
        config = render_caddy_config(
            publish,
            [SimpleNamespace(**r) for r in static.get("routes", [])],
            [SimpleNamespace(**h) for h in static.get("headers", [])],
        )
    except SlipstreamError as exc:
        raise DeployFailed(DeployStatus.BUILD_FAILED, exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
    # beside src/, in the build's root-owned directory: never inside the tree the site's user owns
    root = run.ctx.settings.builds_dir / run.service / str(build.build_id)
    path = (root if root.is_dir() else build.workdir.parent) / f"caddy-d{run.id}" / "caddy.json"
    write_caddy_config(path, config)
    user = run.ctx.instances.user_of(run.service)
    if user is not None:  # Caddy runs as the site's own user: it reads this and keeps its data beside it
        hand_over(path.parent, user)
    run.replace_release(start_command=caddy_command(path), health_check_path=HEALTH_PATH)


def attach_disk(run: DeployRun, build: BuildRef) -> None:
    """Create the disk and expose it at mountPath: a symlink (relative paths: inside the build)."""
    disk = run.release.disk or {}
    name = str(disk.get("name") or "disk")
    if name in (".", "..") or "/" in name or "\0" in name:  # the blueprint check says so first
        raise DeployFailed(DeployStatus.UPDATE_FAILED, f"disk name {name!r} must be one path segment")
    target = run.ctx.settings.disks_dir / run.service / name
    users = run.ctx.instances.users
    if users is not None and build.image is None:
        users.disk_dir(run.service, name)  # owned by the service's user
    else:
        target.mkdir(parents=True, exist_ok=True)
    if build.image is not None:  # a container gets the disk as a volume at mountPath (Instances.spec)
        return
    mount = Path(str(disk.get("mount_path") or "data"))
    link = mount if mount.is_absolute() else build.workdir / mount
    if link.is_symlink():
        if link.resolve() != target.resolve():
            raise DeployFailed(
                DeployStatus.UPDATE_FAILED,
                f"disk mountPath {mount} already links to {link.resolve()}; is another service using the same "
                "mountPath?",
            )
    elif link.exists():
        raise DeployFailed(
            DeployStatus.UPDATE_FAILED,
            f"disk mountPath {mount} already exists and is not slipstream's disk; move it away or pick another "
            "mountPath",
        )
    else:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
    env = {**run.release.env, "RENDER_DISK_MOUNT_PATH": str(link), "SLIPSTREAM_DISK_PATH": str(target)}
    run.replace_release(env=env)


def pre_deploy_snapshots(run: DeployRun) -> None:
    """Snapshot every database the service refers to before its migrations run."""
    names = list(run.release.databases)
    if not names or run.ctx.databases is None:
        return
    run.say(f"-----> Snapshotting {', '.join(names)} before preDeployCommand")
    try:
        run.snapshots = run.ctx.databases.snapshot(names)
    except Exception as exc:
        raise DeployFailed(
            DeployStatus.PRE_DEPLOY_FAILED,
            f"the pre-deploy snapshot failed ({exc}); migrations did not run; the live release keeps serving",
        ) from None
    for b in run.snapshots:
        run.say(f"       snapshot {b.id} ({b.size_bytes} bytes)")


def prune_images(run: DeployRun, build: BuildRef) -> None:
    """Keep a container service's newest images (rollbacks run them) and the live one."""
    if build.image is None or run.ctx.images is None or run.release.runtime != "docker":
        return
    try:
        removed = run.ctx.images.prune(run.service, keep=IMAGES_KEPT, in_use=[build.image])
    except SlipstreamError as exc:
        log.warning("pruning images of %s failed: %s", run.service, exc.message)
        return
    if removed:
        run.say(f"       removed {len(removed)} old image{'s' if len(removed) > 1 else ''}")
