"""Plan a release, purely: a blueprint service plus what the machine knows becomes a :class:`Release`.

``plan_release`` reads :class:`Facts` (kept values, database and key value connection facts, the
stable ports of private services) and never creates anything. What it finds missing it lists as
:class:`Needs`, and fills with placeholders so the rest can still be checked; a deploy's first
step (``engine.provision``) provides the needs and plans again with real facts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from slipstream.blueprint import Blueprint, BlueprintError
from slipstream.blueprint.env import fit_manifest, needed_generated, needed_synced, resolve_env, secret_keys
from slipstream.blueprint.model import Service
from slipstream.engine.release import DEFAULT_SHUTDOWN_DELAY, Release, hostname
from slipstream.errors import InvalidInput
from slipstream.secretnames import looks_secret

# Memory per instance type, in MB (Render's published sizes); an instance over it is restarted.
PLAN_MEMORY_MB = {
    "free": 512,
    "starter": 512,
    "standard": 2048,
    "pro": 4096,
    "pro plus": 8192,
    "pro_plus": 8192,
    "pro max": 16384,
    "pro_max": 16384,
    "pro ultra": 32768,
    "pro_ultra": 32768,
}

# CPU per instance type, in cores (Render's published sizes); capped at the machine's cores.
PLAN_CPUS = {
    "free": 0.1,
    "starter": 0.5,
    "standard": 1.0,
    "pro": 2.0,
    "pro plus": 4.0,
    "pro_plus": 4.0,
    "pro max": 4.0,
    "pro_max": 4.0,
    "pro ultra": 8.0,
    "pro_ultra": 8.0,
}

# Stand-ins while a need is unmet (never run: the deploy provides the need and plans again).
PENDING_VALUE = "pending-generated-value-0000000000000000000000="
PENDING_DATABASE = {
    "connectionString": "postgresql://pending:pending@127.0.0.1:5432/pending",
    "host": "127.0.0.1",
    "port": "5432",
    "user": "pending",
    "password": "pending",
    "database": "pending",
}
PENDING_KEYVALUE = {
    "connectionString": "redis://default:pending@127.0.0.1:6379",
    "host": "127.0.0.1",
    "port": "6379",
    "hostport": "127.0.0.1:6379",
}


@dataclass(frozen=True)
class EnvOverrides:
    """What ``slipstream env set``/``unset`` changed over the blueprint's env."""

    set: Mapping[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.unset)

    def with_changes(self, values: Mapping[str, str], unset: tuple[str, ...] | list[str] = ()) -> EnvOverrides:
        """These overrides after setting ``values`` and removing ``unset``."""
        new_set = {k: v for k, v in self.set.items() if k not in unset}
        new_set.update(values)
        new_unset = [k for k in self.unset if k not in values] + [k for k in unset if k not in self.unset]
        return EnvOverrides(new_set, tuple(new_unset))

    def to_json(self) -> str:
        return json.dumps({"set": dict(self.set), "unset": list(self.unset)}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> EnvOverrides:
        data = json.loads(raw) if raw else {}
        return cls(dict(data.get("set", {})), tuple(data.get("unset", ())))


@dataclass(frozen=True)
class Facts:
    """What the machine knows now, as planning reads it."""

    kept: Mapping[str, str]  # generated and sync: false values, by "<owner>.<KEY>"
    databases: Mapping[str, Mapping[str, str]]  # blueprint database name -> connection properties
    keyvalues: Mapping[str, Mapping[str, str]]  # key value name -> connection properties
    private_ports: Mapping[str, int]  # private service -> its stable port
    http_port: int
    overrides: EnvOverrides = EnvOverrides()


@dataclass(frozen=True)
class Needs:
    """What a release needs created before it can run; empty when the facts were complete."""

    generate: tuple[str, ...] = ()  # generateValue ids with no kept value
    databases: tuple[str, ...] = ()  # blueprint databases with no facts
    keyvalues: tuple[str, ...] = ()  # key value entries with no facts
    private_ports: tuple[str, ...] = ()  # private services with no port

    def __bool__(self) -> bool:
        return bool(self.generate or self.databases or self.keyvalues or self.private_ports)

    def describe(self) -> str:
        parts = [
            *(f"database {n}" for n in self.databases),
            *(f"key value {n}" for n in self.keyvalues),
            *(f"private address of {n}" for n in self.private_ports),
            *(f"generated value {g.split('.', 1)[1]}" for g in self.generate),
        ]
        return ", ".join(parts)


def memory_limit(spec: Service) -> int | None:
    """The memory cap of a service: its explicit override, else its plan's size, else none."""
    if spec.memory_limit_mb:
        return int(spec.memory_limit_mb)
    return PLAN_MEMORY_MB.get(spec.plan.lower()) if spec.plan else None


def cpu_limit(spec: Service) -> float | None:
    """The CPU cap of a service in cores: its plan's share, else none."""
    return PLAN_CPUS.get(spec.plan.lower()) if spec.plan else None


def find_needs(bp: Blueprint, facts: Facts) -> Needs:
    """What ``facts`` lack for any service of ``bp`` (references may reach across services)."""
    routed_private = [s.name for s in bp.services if s.type == "pserv"]
    return Needs(
        generate=tuple(v for v in needed_generated(bp) if v not in facts.kept),
        databases=tuple(d.name for d in bp.databases if d.name not in facts.databases),
        keyvalues=tuple(s.name for s in bp.services if s.type == "keyvalue" and s.name not in facts.keyvalues),
        private_ports=tuple(n for n in routed_private if n not in facts.private_ports),
    )


class _Services(Mapping[str, Mapping[str, object]]):
    """What ``fromService`` may read of each service, the env resolved on demand (validation has
    already refused reference loops, so the recursion ends)."""

    def __init__(self, bp: Blueprint, facts: Facts, kept: Mapping[str, str]) -> None:
        self.bp, self.facts, self.kept = bp, facts, kept
        self._memo: dict[str, dict[str, object]] = {}

    def __getitem__(self, name: str) -> Mapping[str, object]:
        if name not in self._memo:
            other = self.bp.service(name)  # KeyError when absent, as a Mapping should
            if other.type == "keyvalue":
                self._memo[name] = dict(self.facts.keyvalues.get(name, PENDING_KEYVALUE))
                return self._memo[name]
            if other.type == "pserv":
                host, port = "127.0.0.1", self.facts.private_ports.get(name, 0)  # stable across deploys
            else:
                host, port = hostname(name), self.facts.http_port
            facts: dict[str, object] = {"host": host, "port": str(port), "hostport": f"{host}:{port}"}
            self._memo[name] = facts
            databases = {d.name: self.facts.databases.get(d.name, PENDING_DATABASE) for d in self.bp.databases}
            facts["env"] = resolve_env(
                self.bp, other, databases=databases, services=self, generated=self.kept, synced=self.kept
            )
        return self._memo[name]

    def __iter__(self) -> Iterator[str]:
        return iter(s.name for s in self.bp.services)

    def __len__(self) -> int:
        return len(self.bp.services)


def plan_release(bp: Blueprint, spec: Service, facts: Facts, *, require_synced: bool = True) -> tuple[Release, Needs]:
    """The Release ``spec`` would run with ``facts``, and what is missing for it (placeholders
    stand in for the missing parts). Raises InvalidInput for what no step can provide: a
    ``sync: false`` value nobody gave, an env that breaks its envManifest."""
    needs = find_needs(bp, facts)
    kept = dict(facts.kept)
    kept.update({v: PENDING_VALUE for v in needs.generate})
    missing = [v for v in needed_synced(bp) if v not in kept and v.split(".", 1)[0] == spec.name]
    if missing and not require_synced:
        kept.update({v: PENDING_VALUE for v in missing})
    elif missing:
        keys = ", ".join(m.split(".", 1)[1] for m in missing)
        raise InvalidInput(
            f"{spec.name} needs values for sync: false variables: {keys}",
            f"set them with 'slipstream env set {spec.name} KEY=VALUE'",
        )
    databases = {d.name: facts.databases.get(d.name, PENDING_DATABASE) for d in bp.databases}
    try:
        env = resolve_env(
            bp, spec, databases=databases, services=_Services(bp, facts, kept), generated=kept, synced=kept
        )
    except BlueprintError as exc:
        raise InvalidInput(f"cannot resolve the environment of {spec.name}:\n{exc}") from None
    overrides = facts.overrides
    if overrides:
        env.update(overrides.set)
        for key in overrides.unset:
            env.pop(key, None)
        try:  # 'env set' values meet the envManifest like the blueprint's own
            env = fit_manifest(bp, spec, env)
        except BlueprintError as exc:
            raise InvalidInput(
                f"the environment of {spec.name} would not fit its envManifest:\n{exc}",
                "choose a value the manifest allows",
            ) from None
    if spec.alerts:  # checked now, so a deploy never records settings the alert monitor refuses
        from slipstream.alerts.rules import service_overrides

        service_overrides(spec.name, {k: v.model_dump(exclude_none=True) for k, v in spec.alerts.items()})
    return _release(spec, env, overrides, secret_keys(bp, spec)), needs


def _release(spec: Service, env: dict[str, str], overrides: EnvOverrides, secret: set[str]) -> Release:
    secret_sources = set(overrides.set) | secret
    for ev in spec.env_vars:
        if ev.key and (ev.generate_value or ev.sync is False or ev.from_database is not None):
            secret_sources.add(ev.key)
        if ev.key and ev.from_service is not None and ev.from_service.type in ("keyvalue", "redis"):
            secret_sources.add(ev.key)
    used = tuple(sorted({ev.from_database.name for ev in spec.env_vars if ev.from_database is not None}))
    static: dict[str, Any] | None = None
    if spec.is_static:
        static = {
            "publish_path": spec.static_publish_path or ".",
            "routes": [{"type": r.type, "source": r.source, "destination": r.destination} for r in spec.routes],
            "headers": [{"path": h.path, "name": h.name, "value": h.value} for h in spec.headers],
        }
    container: dict[str, Any] | None = None
    if spec.runtime in ("docker", "image"):
        container = {
            "dockerfile_path": spec.dockerfile_path,
            "docker_context": spec.docker_context,
            "docker_command": spec.docker_command,
            "image_url": spec.image.url if spec.image is not None else None,
        }
    disk = None
    if spec.disk is not None:
        disk = {"name": spec.disk.name, "mount_path": spec.disk.mount_path, "size_gb": spec.disk.size_gb}
    return Release(
        service=spec.name,
        type=spec.type,
        runtime=spec.runtime or "",
        start_command=spec.start_command,
        build_command=spec.build_command,
        pre_deploy_command=spec.pre_deploy_command,
        health_check_path=spec.health_check_path,
        num_instances=spec.num_instances or 1,
        shutdown_delay_s=float(spec.max_shutdown_delay_seconds or DEFAULT_SHUTDOWN_DELAY),
        root_dir=spec.root_dir,
        branch=spec.branch,
        hosts=(hostname(spec.name), *(spec.domains or [])),
        env=env,
        secret_keys=tuple(sorted(k for k in env if k in secret_sources or looks_secret(k))),
        databases=used,
        schedule=spec.schedule,
        singleton=bool(spec.singleton),
        disk=disk,
        memory_limit_mb=memory_limit(spec),
        cpus=cpu_limit(spec),
        static=static,
        container=container,
        smoke_checks=tuple(c.model_dump() for c in spec.smoke_checks),
        alerts={k: v.model_dump(exclude_none=True) for k, v in spec.alerts.items()} or None,
    )
