"""Intake: requests become recorded deploys, checked at once, nothing changed when refused.

``deploy``, ``apply``, ``rollback`` and ``set_env`` validate synchronously (an unknown service or
commit, a broken blueprint, a missing ``sync: false`` value, a name another project owns: an error
and nothing recorded), plan the release purely, record a queued deploy holding the blueprint text
it came from, and hand it to the queue. Creating things (databases, generated values, addresses)
is the deploy's own first step (``engine.prepare.provision``).

Every resource belongs to a project: by default the name of the repository's directory,
``--project`` to choose, or the blueprint's own ``projects:`` entry. A project never touches
another project's resources, and ``apply`` deletes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from slipstream.blueprint import Blueprint, BlueprintError, parse_blueprint
from slipstream.blueprint.envcheck import ENV_KEY
from slipstream.blueprint.model import Service
from slipstream.blueprint.plan import snapshot_service
from slipstream.engine.context import DeployContext
from slipstream.engine.planning import EnvOverrides, Needs, plan_release
from slipstream.engine.projects import Projects, project_in, repo_root
from slipstream.engine.queue import DeployQueue
from slipstream.engine.release import Release
from slipstream.errors import InvalidInput, NotFound
from slipstream.secrets import MASK
from slipstream.states import DeployKind, ServiceType

MAX_BLUEPRINT_BYTES = 1024 * 1024
RUNNABLE = {ServiceType.WEB, ServiceType.PSERV, ServiceType.WORKER, ServiceType.CRON}


def unsupported(spec: Service, containers: bool) -> str | None:
    """Why slipstream cannot run this blueprint service here, or None (``containers``: Podman runs)."""
    if spec.type == "keyvalue":
        return None  # not a deploy: provisioned with the blueprint
    if spec.type not in RUNNABLE:
        return f"type {spec.type} is not supported by slipstream yet"
    if spec.runtime in ("docker", "image") and not containers:
        return f"runtime {spec.runtime} needs Podman, which is not installed here ('make install' installs it)"
    return None


@dataclass
class Batch:
    """The deploys of one apply: recorded one by one, queued together (``deferred``), with the
    repository and commits resolved once."""

    deferred: bool = True
    queued: list[tuple[str, int]] = field(default_factory=list)
    roots: dict[Path, Path | None] = field(default_factory=dict)
    shas: dict[tuple[Path, str | None, str | None], str] = field(default_factory=dict)


class Intake:
    """Turns requests into recorded, queued deploys."""

    def __init__(self, ctx: DeployContext, queue: DeployQueue) -> None:
        self.ctx = ctx
        self.queue = queue
        self.projects = Projects(ctx.store)

    # -- reading a blueprint --------------------------------------------------------------------
    def load(self, path: Path) -> tuple[Blueprint, str]:
        """Parse a blueprint file; its model and text. Errors become one clear InvalidInput."""
        if not path.exists():
            raise InvalidInput(
                f"no blueprint at {path}", "pass --blueprint FILE or run from the directory holding render.yaml"
            )
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_BLUEPRINT_BYTES + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_BLUEPRINT_BYTES:
            raise InvalidInput(f"{path} is larger than 1 MiB; is it really a render.yaml?")
        text = data.decode("utf-8", errors="replace")
        try:
            return parse_blueprint(text, filename=str(path)), text
        except BlueprintError as exc:
            raise InvalidInput(
                f"{path} is not a valid blueprint:\n{exc}", f"run 'slipstream validate {path}'"
            ) from None

    # -- deploys --------------------------------------------------------------------------------
    def plan(
        self, bp: Blueprint, path: Path, name: str, overrides: EnvOverrides | None = None
    ) -> tuple[Release, Needs]:
        """The release ``name`` would run now, planned purely, and what it still needs created
        (InvalidInput when it cannot run)."""
        try:
            spec = bp.service(name)
        except KeyError:
            names = ", ".join(s.name for s in bp.services) or "none"
            raise NotFound(f"no service '{name}' in {path} (services: {names})") from None
        reason = unsupported(spec, self.ctx.images is not None)
        if reason or spec.type == "keyvalue":
            raise InvalidInput(f"service '{name}' cannot run here: {reason or 'a key value is not deployed'}")
        release, needs = plan_release(bp, spec, self.ctx.provisioner.facts(bp, name, overrides))
        self.ctx.masker.add(release.env[k] for k in release.secret_keys)
        return release, needs

    def deploy(
        self,
        service: str,
        *,
        blueprint: Path | None = None,
        commit: str | None = None,
        from_dir: Path | None = None,
        project: str | None = None,
        loaded: tuple[Blueprint, str] | None = None,
        batch: Batch | None = None,
        planned: tuple[Release, Needs] | None = None,
    ) -> int:
        """Queue a deploy of ``service``; raises at once (nothing changed) for bad input. With
        ``batch`` (apply), the deploy is recorded and left for the caller to queue, the repository
        and commit are resolved once per batch, and ``planned`` is the release already planned."""
        known = self._known(service)
        if blueprint is None:
            if known is None or not known.blueprint:
                raise NotFound(
                    f"unknown service '{service}'", "pass --blueprint FILE to deploy it from its render.yaml"
                )
            blueprint = Path(known.blueprint)
            project = project or known.project
        blueprint = blueprint.resolve()
        bp, text = loaded or self.load(blueprint)
        project = self.projects.project_of(blueprint, project)
        if loaded is None:
            self.projects.check_owners(bp, project, [service])
        release, needs = planned or self.plan(bp, blueprint, service)
        batch = batch or Batch(deferred=False)
        if from_dir is None and blueprint.parent not in batch.roots:
            batch.roots[blueprint.parent] = repo_root(blueprint.parent)
        repo = batch.roots[blueprint.parent] if from_dir is None else None
        if release.runtime == "image":  # a prebuilt image: no source to build
            repo, source, sha = None, f"image {(release.container or {}).get('image_url')}", None
        elif from_dir is not None:
            if not from_dir.is_dir():
                raise InvalidInput(f"--from-dir {from_dir} is not a directory")
            source, sha = f"directory {from_dir}", None
        else:
            if repo is None:
                raise InvalidInput(
                    f"{blueprint.parent} is not inside a git repository", "commit it to git, or deploy with --from-dir"
                )
            key = (repo, commit, release.branch)
            if key not in batch.shas:
                batch.shas[key] = self.ctx.builder.resolve_commit(repo, commit, release.branch)
            sha = batch.shas[key]
            source = f"commit {sha[:12]}"
        if not batch.deferred:
            self.projects.claim(bp, project, [service])
            self.projects.record_snapshot(bp, project)
        spec = bp.service(service)
        self.ctx.store.upsert_service(
            service,
            release.type,
            release.runtime,
            {**release.public(), "snapshot": snapshot_service(bp, spec)},
            release.env,
            str(blueprint),
            str(repo) if repo else None,
            project=project_in(bp, "service", service) or project,
        )
        src = source_record(blueprint, text, needs, repo=repo, from_dir=from_dir)
        deploy_id = self.ctx.store.new_deploy(
            service, DeployKind.DEPLOY, source=source, commit_sha=sha, release={**release.to_dict(), "_source": src}
        )
        if batch.deferred:
            batch.queued.append((service, deploy_id))
        else:
            self.queue.submit(service, deploy_id)
        return deploy_id

    def apply(self, blueprint: Path, project: str | None = None) -> dict[str, Any]:
        """Deploy every service of a blueprint that slipstream can run; list the ones it skipped.

        Every release is planned (and so checked) before anything is recorded; the deploys are
        queued together at the end, so recording 200 of them does not compete with their runs."""
        blueprint = blueprint.resolve()
        bp, text = self.load(blueprint)
        project = self.projects.project_of(blueprint, project)
        self.projects.check_owners(bp, project)
        runnable = [s for s in bp.services if s.type != "keyvalue" and not unsupported(s, self.ctx.images is not None)]
        planned = {spec.name: self.plan(bp, blueprint, spec.name) for spec in runnable}
        batch = Batch()
        deploys, skipped = [], []
        try:
            for spec in bp.services:
                reason = unsupported(spec, self.ctx.images is not None)
                if reason:
                    skipped.append({"service": spec.name, "reason": reason})
                elif spec.type != "keyvalue":
                    deploys.append(
                        self.deploy(
                            spec.name,
                            blueprint=blueprint,
                            project=project,
                            loaded=(bp, text),
                            batch=batch,
                            planned=planned[spec.name],
                        )
                    )
            self.projects.claim(bp, project, [s.name for s in runnable])
            self.projects.record_snapshot(bp, project)
        finally:
            for service, deploy_id in batch.queued:  # what was recorded runs, as if queued one by one
                self.queue.submit(service, deploy_id)
        return {
            "project": project,
            "deploys": deploys,
            "skipped": skipped,
            "warnings": [str(w) for w in bp.warnings],
        }

    def rollback(self, service: str, to: int | None = None, with_pre_deploy: bool = False) -> int:
        """Queue a redeploy of an earlier successful build (no rebuild)."""
        svc = self.ctx.store.service(service)
        history = self.ctx.store.deploys(service, limit=500)
        live_build = self.ctx.store.deploy(svc.live_deploy_id).build_id if svc.live_deploy_id else None
        if to is not None:
            target = next((d for d in history if d.id == to), None)
            if target is None:
                raise NotFound(f"deploy {to} is not a deploy of {service}", f"run 'slipstream deploys {service}'")
            if not target.status.succeeded or target.build_id is None:
                raise InvalidInput(f"deploy {to} never went live ({target.status}); pick a successful deploy")
        else:
            target = next(
                (
                    d
                    for d in history
                    if d.id != svc.live_deploy_id
                    and d.build_id is not None
                    and d.status.succeeded
                    and (svc.live_deploy_id is None or d.id < svc.live_deploy_id or d.build_id != live_build)
                ),
                None,
            )
            if target is None:
                raise NotFound(f"{service} has no earlier successful deploy to roll back to")
        deploy_id = self.ctx.store.new_deploy(
            service,
            DeployKind.ROLLBACK,
            source=f"rollback to deploy {target.id}",
            build_id=target.build_id,
            commit_sha=target.commit_sha,
            rollback_of=target.id,
            with_pre_deploy=with_pre_deploy,
            release=self.ctx.store.deploy_release(target.id),
        )
        self.queue.submit(service, deploy_id)
        return deploy_id

    def set_env(self, service: str, values: dict[str, str], unset: Sequence[str] = ()) -> int | None:
        """Change env values; a live service gets a new release from the same build (gated flip)."""
        bad = [k for k in [*values, *unset] if not ENV_KEY.fullmatch(k)]
        if bad:
            raise InvalidInput(
                f"not a valid env key: {', '.join(bad)}", "keys have no '=', spaces or control characters"
            )
        self.ctx.masker.add(values.values())
        overrides = self.ctx.provisioner.overrides(service).with_changes(values, list(unset))
        pending = {f"{service}.{key}": value for key, value in values.items()}  # also answers sync: false
        svc = self._known(service)
        release, src = None, None
        if svc is not None and svc.blueprint:
            path = Path(svc.blueprint)  # check first: a refused change saves nothing
            try:
                bp, text = self.load(path)
                facts = self.ctx.provisioner.facts(bp, service, overrides)
                facts = replace(facts, kept={**facts.kept, **pending})
                is_live = svc.live_deploy_id is not None  # before a first deploy, other sync: false keys wait
                release, needs = plan_release(bp, bp.service(service), facts, require_synced=is_live)
                src = source_record(path, text, needs) if needs else None
            except InvalidInput as exc:  # the message may quote a value just set: mask it
                raise InvalidInput(self.ctx.masker.mask(exc.message), exc.hint) from None
        for vid, value in pending.items():
            self.ctx.store.keep_value(vid, value)
        self.ctx.provisioner.save_overrides(service, overrides)
        if release is None or svc is None or svc.live_deploy_id is None:
            return None
        live = self.ctx.store.deploy(svc.live_deploy_id)
        self.ctx.masker.add(release.env[k] for k in release.secret_keys)
        self.ctx.store.upsert_service(
            service,
            release.type,
            release.runtime,
            {**svc.config, **release.public()},
            release.env,
            svc.blueprint,
            svc.repo,
        )
        changed = ", ".join([*(f"{k} set" for k in values), *(f"{k} unset" for k in unset)])
        deploy_id = self.ctx.store.new_deploy(
            service,
            DeployKind.CONFIG,
            source=f"env change: {changed}",
            build_id=live.build_id,
            commit_sha=live.commit_sha,
            with_pre_deploy=False,
            release={**release.to_dict(), **({"_source": src} if src else {})},
        )
        self.queue.submit(service, deploy_id)
        return deploy_id

    def env(self, service: str) -> list[dict[str, Any]]:
        """The live env's keys with masked values and where each comes from."""
        svc = self.ctx.store.service(service)
        env = self.ctx.store.deploy_release(svc.live_deploy_id).get("env", {}) if svc.live_deploy_id else {}
        overrides = self.ctx.provisioner.overrides(service)
        return [
            {"key": k, "value": MASK, "source": "env set" if k in overrides.set else "blueprint"} for k in sorted(env)
        ]

    def cancel(self, service: str) -> list[int]:
        """Cancel the queued and in-progress (not yet flipped) deploys of ``service``."""
        self.ctx.store.service(service)
        return self.queue.cancel(service)

    def _known(self, service: str) -> Any:
        try:
            return self.ctx.store.service(service)
        except NotFound:
            return None


def source_record(
    blueprint: Path, text: str, needs: Needs, *, repo: Path | None = None, from_dir: Path | None = None
) -> dict[str, Any]:
    """What a deploy keeps of where it came from: the source, and the blueprint text it was
    planned from (its provisioning step plans again from the very same text)."""
    return {
        "repo": str(repo) if repo else None,
        "from_dir": str(from_dir) if from_dir else None,
        "blueprint_dir": str(blueprint.parent),
        "blueprint": str(blueprint),
        "blueprint_text": text,
        "needs": {k: list(v) for k, v in asdict(needs).items() if v},
    }
