"""Turn a service's env declarations into concrete values, purely.

The engine gathers what only it can know and passes it in: connection facts of databases and
services, values generated once (``generateValue``), values the user gave (``sync: false``).
Values are keyed ``"<service or group>.<KEY>"``. Resolution order follows Render: the entries of
each attached group in ``fromGroup`` order, then the service's own entries (own wins). The env
manifest then adds defaults and checks the result. A reference to a resource (or an env var)
the file does not declare sets nothing: on Render it lives in the workspace, and validate has
said so. ``fromService.envVarKey`` may copy Render's own variables (``RENDER_EXTERNAL_URL``, ...),
worked out here as the engine sets them. Anything else unresolved is a :class:`BlueprintError`
naming the entry's line.
"""

from __future__ import annotations

from collections.abc import Mapping

from slipstream.blueprint.envcheck import COPYABLE_PLATFORM_KEYS
from slipstream.blueprint.manifest import Rule, apply_defaults, check_env, rules_for
from slipstream.blueprint.model import Blueprint, EnvVar, EnvVarGroup, Service
from slipstream.blueprint.parse import collector_for
from slipstream.blueprint.problems import Collector, Path
from slipstream.secretnames import looks_secret

SECRET_PROPERTIES = {"connectionString", "password"}


def _owner_entries(bp: Blueprint) -> list[tuple[str, list[EnvVar]]]:
    return [(s.name, s.env_vars) for s in bp.services] + [(g.name, g.env_vars) for g in bp.env_var_groups]


def needed_generated(bp: Blueprint) -> list[str]:
    """Ids ``"<owner>.<KEY>"`` of every ``generateValue`` entry, in file order."""
    return [f"{owner}.{e.key}" for owner, entries in _owner_entries(bp) for e in entries if e.generate_value and e.key]


def needed_synced(bp: Blueprint) -> list[str]:
    """Ids ``"<service>.<KEY>"`` of every ``sync: false`` entry the user must supply."""
    return [
        f"{s.name}.{e.key}" for s in bp.services for e in s.env_vars if e.sync is False and e.key and e.source == "sync"
    ]


def groups_of(bp: Blueprint, service: Service) -> dict[str, EnvVarGroup]:
    """The groups a service attaches, by name."""
    names = {e.from_group for e in service.env_vars if e.from_group}
    return {g.name: g for g in bp.env_var_groups if g.name in names}


def manifest_rules(bp: Blueprint, service: Service | str) -> dict[str, Rule]:
    """The effective env manifest of a service (empty without ``envManifest``)."""
    svc = bp.service(service) if isinstance(service, str) else service
    groups = groups_of(bp, svc)
    return rules_for(svc, groups, bp.path_of("service", svc.name), {name: bp.path_of("group", name) for name in groups})


def resolve_env(
    bp: Blueprint,
    service: Service | str,
    *,
    databases: Mapping[str, Mapping[str, str]],
    services: Mapping[str, Mapping[str, object]],
    generated: Mapping[str, str],
    synced: Mapping[str, str],
) -> dict[str, str]:
    """Return the env of ``service``; raise :class:`BlueprintError` naming every unresolved entry.

    ``databases[name]`` maps properties (``connectionString``, ``host``, ...) to values;
    ``services[name]`` maps ``host``/``port``/``hostport``/``connectionString`` to values and
    ``"env"`` to that service's resolved env.
    """
    svc = bp.service(service) if isinstance(service, str) else service
    out = collector_for(bp)
    env: dict[str, str] = {}
    groups = {g.name: g for g in bp.env_var_groups}
    for entry in svc.env_vars:
        group = groups.get(entry.from_group or "")
        if group is not None:  # a group the file does not declare sets nothing here (validate warns)
            base = bp.path_of("group", group.name) + ("envVars",)
            for here, e in out.items(base, group.env_vars):
                if e.source != "sync":  # Render ignores sync: false in groups (validate warns)
                    _resolve_one(bp, e, group.name, here, env, out, databases, services, generated, synced)
    base = bp.path_of("service", svc.name) + ("envVars",)
    own = [(here, e) for here, e in out.items(base, svc.env_vars) if not e.from_group]
    later = [(here, e) for here, e in own if _copies_own_key(e, svc)]
    for here, e in own:
        if (here, e) not in later:
            _resolve_one(bp, e, svc.name, here, env, out, databases, services, generated, synced)
    for _, e in later:  # a copy of one of the service's own keys, once those are known
        ref = e.from_service
        assert ref is not None and e.key is not None
        if ref.env_var_key in env:
            env[e.key] = env[str(ref.env_var_key)]
    if out.errors:
        raise out.fail()
    return fit_manifest(bp, svc, env)


def fit_manifest(bp: Blueprint, service: Service | str, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the manifest's defaults; BlueprintError naming every key that breaks a rule."""
    svc = bp.service(service) if isinstance(service, str) else service
    rules = manifest_rules(bp, svc)
    full = apply_defaults(rules, env)
    out = collector_for(bp)
    check_env(rules, full, out, svc.name)
    if out.errors:
        raise out.fail()
    return full


def _copies_own_key(e: EnvVar, svc: Service) -> bool:
    """True for ``fromService`` naming the service itself and one of its own (not Render's) keys."""
    ref = e.from_service
    return (
        ref is not None
        and ref.name == svc.name
        and ref.env_var_key is not None
        and ref.env_var_key not in COPYABLE_PLATFORM_KEYS
    )


def _resolve_one(
    bp: Blueprint,
    e: EnvVar,
    owner: str,
    path: Path,
    env: dict[str, str],
    out: Collector,
    databases: Mapping[str, Mapping[str, str]],
    services: Mapping[str, Mapping[str, object]],
    generated: Mapping[str, str],
    synced: Mapping[str, str],
) -> None:
    key = e.key or ""
    ident = f"{owner}.{key}"
    source = e.source
    if source == "value":
        if e.value is not None:  # an entry without any source sets nothing (validate warns)
            env[key] = e.value
    elif source == "generateValue":
        if ident in generated:
            env[key] = generated[ident]
        else:
            out.error(
                path,
                f"no generated value for {key} ({ident})",
                "values are generated once when the blueprint is first applied; run 'slipstream apply' again",
            )
    elif source == "sync":
        if ident in synced:
            env[key] = synced[ident]
        else:
            out.error(
                path,
                f"{key} needs a value (it is declared with sync: false)",
                f"give it with --env-file (a line '{key}=...') or answer the prompt at apply",
            )
    elif source == "fromDatabase" and e.from_database is not None:
        ref = e.from_database
        name = _database_serving(bp, ref.name)
        if name is None:
            return  # not declared in the file: nothing to read here (validate warns)
        facts = databases.get(name)
        if facts is None:
            out.error(
                path + ("fromDatabase",),
                f"database '{ref.name}' is not available yet",
                "apply the blueprint so the database is created",
                key=True,
            )
        elif ref.property not in facts:
            out.error(path + ("fromDatabase", "property"), f"database '{ref.name}' did not report its {ref.property}")
        else:
            env[key] = str(facts[ref.property])
    elif source == "fromService" and e.from_service is not None:
        _resolve_service(bp, e, path, env, out, services)


def _database_serving(bp: Blueprint, name: str) -> str | None:
    """The database that answers for ``name``: itself, or the primary of a read replica of that name."""
    for d in bp.databases:
        if d.name == name or any(r.name == name for r in d.read_replicas):
            return d.name
    return None


def _resolve_service(
    bp: Blueprint,
    e: EnvVar,
    path: Path,
    env: dict[str, str],
    out: Collector,
    services: Mapping[str, Mapping[str, object]],
) -> None:
    ref = e.from_service
    assert ref is not None and e.key is not None
    try:
        target = bp.service(ref.name)
    except KeyError:
        return  # not declared in the file: nothing to read here (validate warns)
    facts = services.get(ref.name)
    if facts is None:
        out.error(
            path + ("fromService",),
            f"service '{ref.name}' is not available yet",
            "apply the blueprint so the service is created",
            key=True,
        )
        return
    if ref.property is not None:
        if ref.property in facts:
            env[e.key] = str(facts[ref.property])
        else:
            out.error(path + ("fromService", "property"), f"service '{ref.name}' did not report its {ref.property}")
        return
    key = str(ref.env_var_key)
    declared = {x.key for x in target.env_vars if x.key} | {
        x.key for g in groups_of(bp, target).values() for x in g.env_vars if x.key
    }
    if key not in declared:
        if key in COPYABLE_PLATFORM_KEYS:
            env[e.key] = platform_value(key, target, facts)
        return  # set in Render's dashboard at most: nothing to copy here (validate warns)
    other = facts.get("env")
    if isinstance(other, Mapping) and key in other:
        env[e.key] = str(other[key])
    else:
        out.error(
            path + ("fromService", "envVarKey"),
            f"service '{ref.name}' has no value for {ref.env_var_key} yet",
            f"resolve '{ref.name}' first",
        )


def platform_value(key: str, target: Service, facts: Mapping[str, object]) -> str:
    """The value Render would give ``target``'s ``key`` (one of COPYABLE_PLATFORM_KEYS), worked
    out as engine/release.py sets it in every instance: web services answer at
    ``http://<host>:<port>`` (``facts`` host and port), other types have no external URL."""
    web = target.type == "web"
    host, port = str(facts.get("host", "")), str(facts.get("port", ""))
    values = {
        "RENDER": "true",
        "IS_PULL_REQUEST": "false",
        "RENDER_SERVICE_NAME": target.name,
        "RENDER_SERVICE_TYPE": target.type,
        "RENDER_EXTERNAL_HOSTNAME": host if web else "",
        "RENDER_EXTERNAL_URL": f"http://{host}:{port}" if web else "",
    }
    return values[key]


def secret_keys(bp: Blueprint, service: Service | str, _seen: frozenset[str] = frozenset()) -> set[str]:
    """Keys of a service's env whose values must never be shown (plan, logs, API)."""
    svc = bp.service(service) if isinstance(service, str) else service
    _seen = _seen | {svc.name}
    secrets: set[str] = set()
    for group in groups_of(bp, svc).values():
        secrets |= {e.key for e in group.env_vars if e.key and is_secret_entry(e)}
        secrets |= {k for k, r in group.env_manifest.items() if r.secret}
    secrets |= {e.key for e in svc.env_vars if e.key and is_secret_entry(e)}
    for e in svc.env_vars:
        ref = e.from_service
        if e.key and ref is not None and ref.env_var_key:
            try:
                other = bp.service(ref.name)
            except KeyError:
                continue
            if other.name not in _seen and ref.env_var_key in secret_keys(bp, other, _seen):
                secrets.add(e.key)
    secrets |= {k for k, r in manifest_rules(bp, svc).items() if r.entry.secret}
    return secrets


def is_secret_entry(e: EnvVar) -> bool:
    """True when an entry's value is secret by its source, its ``sensitive`` flag or its name."""
    if e.sensitive or e.source in ("generateValue", "sync"):
        return True
    if e.from_database is not None:
        return e.from_database.property in SECRET_PROPERTIES
    if e.from_service is not None and e.from_service.property is not None:
        return e.from_service.property in SECRET_PROPERTIES
    return bool(e.key and looks_secret(e.key))
