"""``plan_blueprint``: what applying a blueprint would create and update, and what it keeps that is no
longer in it (apply never deletes: deleting is an explicit command). Pure.

The engine passes ``current`` as a plain snapshot (no secret values in it)::

    {"services":  {name: {"type", "runtime", "environment", <any field below>,
                          "env_keys": [...], "env_sources": {KEY: source}, "env_digests": {KEY: sha256}}},
     "databases": {name: {"environment", "database_name", "user", "region", "postgres_major_version", "plan"}},
     "groups":    {name: {"environment", "env_keys": [...], "env_sources": {...}, "env_digests": {...}}}}

A service snapshot may hold any of ``SERVICE_FIELDS`` (snake_case, as on the model), with
``disk`` as ``{"name", "mount_path", "size_gb"}`` or None and ``env_groups`` as the list of
attached group names. Only fields present in a snapshot are compared, so the engine decides what
it tracks. An env
source is one of ``value``, ``generateValue``, ``sync``, ``fromDatabase:<db>.<property>``,
``fromService:<type>/<name>.<property>`` or ``fromService:<type>/<name>.env:<KEY>``
(:func:`env_source`); a digest is the SHA-256 hex of a literal value. Secret values are never
shown: the plan says ``(secret)`` instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from slipstream.blueprint.env import is_secret_entry, secret_keys
from slipstream.blueprint.model import Blueprint, Database, EnvVar, Service

SERVICE_FIELDS = (
    "type",
    "runtime",
    "environment",
    "plan",
    "region",
    "repo",
    "branch",
    "root_dir",
    "build_command",
    "start_command",
    "pre_deploy_command",
    "health_check_path",
    "num_instances",
    "max_shutdown_delay_seconds",
    "schedule",
    "static_publish_path",
    "docker_command",
    "auto_deploy_trigger",
    "domains",
    "disk",
    "env_groups",
)
DATABASE_FIELDS = ("environment", "database_name", "user", "region", "postgres_major_version", "plan", "extensions")
IMMUTABLE = {
    "service": {"type", "runtime", "environment"},
    "database": {"environment", "database_name", "user", "region", "postgres_major_version"},
    "group": {"environment"},
}
DISPLAY = {"env_groups": "envGroups", "disk": "disk", "environment": "environment"}


@dataclass(frozen=True)
class FieldChange:
    """One field whose desired value differs from the current one."""

    field: str
    old: Any
    new: Any
    immutable: bool = False


@dataclass(frozen=True)
class EnvChange:
    """One env key added, changed or removed; ``shown`` never holds a secret value."""

    key: str
    op: Literal["add", "change", "remove"]
    shown: str


Kind = Literal["database", "group", "service"]
Op = Literal["create", "update", "kept", "unchanged"]


@dataclass(frozen=True)
class Action:
    """What happens to one object."""

    kind: Kind
    name: str
    op: Op
    environment: str | None = None
    detail: str = ""
    info: str = ""
    fields: tuple[FieldChange, ...] = ()
    env: tuple[EnvChange, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def immutable_changes(self) -> tuple[FieldChange, ...]:
        """Changes apply cannot make in place."""
        return tuple(f for f in self.fields if f.immutable)


@dataclass(frozen=True)
class Plan:
    """Every action, in the order apply would run them."""

    actions: tuple[Action, ...] = field(default_factory=tuple)
    conflicts: tuple[str, ...] = ()  # names this blueprint declares that another project owns

    def count(self, op: str) -> int:
        """How many actions have operation ``op``."""
        return sum(1 for a in self.actions if a.op == op)

    @property
    def blocked(self) -> bool:
        """True when apply would refuse: an immutable field would change, or a name is taken."""
        return bool(self.conflicts) or any(a.immutable_changes for a in self.actions)

    @property
    def has_changes(self) -> bool:
        """True when applying would change anything."""
        return any(a.op not in ("unchanged", "kept") for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data."""
        return {
            "actions": [asdict(a) for a in self.actions],
            "conflicts": list(self.conflicts),
            "blocked": self.blocked,
        }


def env_source(e: EnvVar) -> str:
    """Describe where an entry's value comes from (the form stored in ``env_sources``)."""
    if e.from_database is not None:
        return f"fromDatabase:{e.from_database.name}.{e.from_database.property}"
    if e.from_service is not None:
        ref = e.from_service
        tail = ref.property if ref.property is not None else f"env:{ref.env_var_key}"
        return f"fromService:{ref.type}/{ref.name}.{tail}"
    return e.source


def value_digest(value: str) -> str:
    """SHA-256 hex of a literal value, as the engine stores it in ``env_digests``."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _shown(e: EnvVar, secret: bool) -> str:
    src = e.source
    if src == "value":
        return "(secret)" if secret else _show(e.value)
    if src == "generateValue":
        return "(generated once)"
    if src == "sync":
        return "(asked for at the first apply)"
    if e.from_database is not None:
        return f"(from database {e.from_database.name}: {e.from_database.property})"
    ref = e.from_service
    assert ref is not None
    what = ref.property if ref.property is not None else f"env {ref.env_var_key}"
    return f"(from {ref.type} service {ref.name}: {what})"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + "..."
        return "'" + text.replace("\n", "\\n") + "'"
    return str(value)


def _env_changes(entries: list[EnvVar], secrets: set[str], current: Mapping[str, Any] | None) -> tuple[EnvChange, ...]:
    own = [e for e in entries if e.key and not e.from_group]
    cur = current or {}
    keys = set(cur.get("env_keys") or [])
    sources = cur.get("env_sources") or {}
    digests = cur.get("env_digests") or {}
    changes = []
    for e in own:
        key = str(e.key)
        secret = key in secrets or is_secret_entry(e)
        if key not in keys:
            changes.append(EnvChange(key, "add", f"{key}={_shown(e, secret)}"))
            continue
        old_src, new_src = sources.get(key), env_source(e)
        if old_src is not None and old_src != new_src:
            changes.append(EnvChange(key, "change", f"{key}={_shown(e, secret)} (was {old_src})"))
        elif new_src == "value" and key in digests and digests[key] != value_digest(e.value or ""):
            changes.append(
                EnvChange(key, "change", f"{key}=(secret, changed)" if secret else f"{key}={_show(e.value)}")
            )
    desired = {e.key for e in own}
    changes += [EnvChange(k, "remove", k) for k in sorted(keys - desired)]
    return tuple(changes)


def _service_values(s: Service) -> dict[str, Any]:
    values = {name: getattr(s, name) for name in SERVICE_FIELDS if name not in ("disk", "env_groups")}
    values["disk"] = s.disk.model_dump() if s.disk else None
    values["env_groups"] = [e.from_group for e in s.env_vars if e.from_group]
    return values


def _field_changes(
    kind: str, desired: Mapping[str, Any], current: Mapping[str, Any], aliases: Mapping[str, str]
) -> tuple[FieldChange, ...]:
    changes = []
    for name, new in desired.items():
        if name in current and current[name] != new:
            changes.append(FieldChange(aliases.get(name, name), current[name], new, name in IMMUTABLE[kind]))
    return tuple(changes)


def _aliases(model: type[Service] | type[Database]) -> dict[str, str]:
    out = {name: info.alias or name for name, info in model.model_fields.items()}
    out.update(DISPLAY)
    return out


def _service_action(bp: Blueprint, s: Service, current: Mapping[str, Any] | None) -> Action:
    secrets = secret_keys(bp, s)
    notes = []
    if s.disk is not None:
        notes.append(
            f"has a disk ({s.disk.mount_path}): each deploy stops the old instance before "
            "starting the new one (a short downtime, as on Render)"
        )
    if s.unsupported_reason:
        notes.append(f"{s.unsupported_reason}: apply records it but does not start it")
    detail, info = f"{s.type} service", s.runtime or ""
    if current is None:
        return Action(
            "service",
            s.name,
            "create",
            s.environment,
            detail,
            info,
            env=_env_changes(s.env_vars, secrets, None),
            notes=tuple(notes),
        )
    fields = _field_changes("service", _service_values(s), current, _aliases(Service))
    env = _env_changes(s.env_vars, secrets, current)
    for f in fields:
        if f.immutable:
            notes.append(
                f"{f.field} cannot change ({_show(f.old)} -> {_show(f.new)}): delete the "
                "service and create it again to change it"
            )
    op: Op = "update" if fields or env else "unchanged"
    return Action("service", s.name, op, s.environment, detail, info, fields, env, tuple(notes))


def _open_to_everyone(d: Database) -> tuple[str, ...]:
    """A warning for an ``ipAllowList`` rule that lets any address in (seed 002's risk)."""
    wide = [a.source for a in d.ip_allow_list if _prefix_len(a.source) == 0]
    if not wide:
        return ()
    return (
        f"warning: ipAllowList {', '.join(wide)} lets any address on the internet reach this database "
        "on Render; list only the addresses that need it (here: any address PostgreSQL listens on, "
        "see SLIPSTREAM_POSTGRES_LISTEN)",
    )


def _prefix_len(source: str) -> int | None:
    try:
        return ipaddress.ip_network(source, strict=False).prefixlen
    except ValueError:
        return None


def _database_action(d: Database, current: Mapping[str, Any] | None) -> Action:
    detail = "database"
    info = f"PostgreSQL {d.postgres_major_version}" if d.postgres_major_version else ""
    warnings = _open_to_everyone(d)
    if current is None:
        return Action("database", d.name, "create", d.environment, detail, info, notes=warnings)
    desired = {name: getattr(d, name) for name in DATABASE_FIELDS}
    fields = _field_changes("database", desired, current, _aliases(Database))
    notes = tuple(
        f"{f.field} cannot change ({_show(f.old)} -> {_show(f.new)}): create a new "
        "database and move the data with a backup and restore"
        for f in fields
        if f.immutable
    )
    return Action(
        "database",
        d.name,
        "update" if fields else "unchanged",
        d.environment,
        detail,
        info,
        fields,
        notes=notes + warnings,
    )


def plan_blueprint(
    desired: Blueprint, current: Mapping[str, Any] | None = None, *, environment: str | None = None
) -> Plan:
    """Compare ``desired`` with the ``current`` snapshot; only ``environment`` when given."""
    cur = current or {}
    cur_services: Mapping[str, Any] = cur.get("services") or {}
    cur_dbs: Mapping[str, Any] = cur.get("databases") or {}
    cur_groups: Mapping[str, Any] = cur.get("groups") or {}
    actions: list[Action] = []
    for d in desired.databases:
        actions.append(_database_action(d, cur_dbs.get(d.name)))
    for g in desired.env_var_groups:
        secrets = {e.key for e in g.env_vars if e.key and is_secret_entry(e)}
        secrets |= {k for k, r in g.env_manifest.items() if r.secret}
        now = cur_groups.get(g.name)
        env = _env_changes(g.env_vars, secrets, now)
        if now is None:
            actions.append(Action("group", g.name, "create", g.environment, "env var group", env=env))
        else:
            fields = _field_changes("group", {"environment": g.environment}, now, DISPLAY)
            actions.append(
                Action(
                    "group",
                    g.name,
                    "update" if env or fields else "unchanged",
                    g.environment,
                    "env var group",
                    "",
                    fields,
                    env,
                )
            )
    for s in desired.services:
        actions.append(_service_action(desired, s, cur_services.get(s.name)))
    names = {
        "service": {s.name for s in desired.services},
        "group": {g.name for g in desired.env_var_groups},
        "database": {d.name for d in desired.databases},
    }
    kinds: tuple[tuple[Kind, Mapping[str, Any]], ...] = (
        ("service", cur_services),
        ("group", cur_groups),
        ("database", cur_dbs),
    )
    for kind, existing in kinds:
        for name in sorted(existing):
            if name not in names[kind]:
                snap = existing[name] or {}
                detail = {
                    "service": f"{snap.get('type', '')} service".strip(),
                    "group": "env var group",
                    "database": "database",
                }[kind]
                actions.append(
                    Action(
                        kind,
                        name,
                        "kept",
                        snap.get("environment"),
                        detail,
                        notes=(
                            f"no longer in the blueprint (kept); delete it with: {_DELETE[kind].format(name=name)}",
                        ),
                    )
                )
    if environment is not None:
        actions = [a for a in actions if a.environment == environment]
    return Plan(tuple(actions), _conflicts(desired, cur.get("foreign") or {}))


_DELETE = {
    "service": "slipstream delete {name}",
    "database": "slipstream db delete {name}",
    "group": "slipstream project delete PROJECT (groups go with their project)",
}


def _conflicts(desired: Blueprint, foreign: Mapping[str, Mapping[str, str]]) -> tuple[str, ...]:
    """One line per name ``desired`` declares that another project owns."""
    declared = [
        *(("keyvalue" if s.type == "keyvalue" else "service", s.name) for s in desired.services),
        *(("database", d.name) for d in desired.databases),
        *(("group", g.name) for g in desired.env_var_groups),
    ]
    what = {"group": "env var group", "keyvalue": "key value"}
    return tuple(
        f"{what.get(kind, kind)} '{name}' belongs to project '{foreign[kind][name]}'"
        for kind, name in declared
        if name in (foreign.get(kind) or {})
    )


_SIGN = {"create": "+", "update": "~", "kept": "!", "unchanged": "="}
_ENV_SIGN = {"add": "+", "change": "~", "remove": "-"}


def render_plan(plan: Plan, *, title: str = "Plan") -> str:
    """Render a plan as the text ``slipstream plan`` prints (and golden tests compare)."""
    lines = [
        f"{title}: {plan.count('create')} to create, {plan.count('update')} to update, "
        f"{plan.count('kept')} no longer in the blueprint (kept), {plan.count('unchanged')} unchanged"
    ]
    for conflict in plan.conflicts:
        lines.append(f"x {conflict}: rename it in this blueprint, or delete it from that project first")
    for a in plan.actions:
        info = f" ({a.info})" if a.info else ""
        where = f" in environment {a.environment}" if a.environment else ""
        lines.append(f"{_SIGN[a.op]} {a.op} {a.detail or a.kind} {a.name}{info}{where}")
        for f in a.fields:
            lines.append(
                f"    ~ {f.field}: {_show(f.old)} -> {_show(f.new)}" + ("  (immutable)" if f.immutable else "")
            )
        for e in a.env:
            lines.append(f"    {_ENV_SIGN[e.op]} {e.shown}")
        for note in a.notes:
            lines.append(f"    ! {note}")
    if not plan.actions:
        lines.append("(nothing in this blueprint)")
    if plan.conflicts:
        lines.append("Apply will refuse: another project owns a name this blueprint declares.")
    elif plan.blocked:
        lines.append("Apply will refuse: some fields marked (immutable) cannot change in place.")
    return "\n".join(lines) + "\n"


def _env_snapshot(bp: Blueprint, owner: Service | None, entries: list[EnvVar]) -> dict[str, Any]:
    secrets = secret_keys(bp, owner) if owner is not None else set()
    own = [e for e in entries if e.key and not e.from_group]
    return {
        "env_keys": sorted(str(e.key) for e in own),
        "env_sources": {str(e.key): env_source(e) for e in own},
        "env_digests": {
            str(e.key): value_digest(e.value or "")
            for e in own
            if e.source == "value" and not (str(e.key) in secrets or is_secret_entry(e))
        },
    }


def snapshot_service(bp: Blueprint, s: Service) -> dict[str, Any]:
    """What the engine records of a service it applied, in the form ``plan_blueprint`` compares."""
    return {**_service_values(s), **_env_snapshot(bp, s, s.env_vars)}


def snapshot_database(d: Database) -> dict[str, Any]:
    """What the engine records of a database it created."""
    return {name: getattr(d, name) for name in DATABASE_FIELDS}


def snapshot_groups(bp: Blueprint) -> dict[str, Any]:
    """What the engine records of the env var groups of an applied blueprint."""
    return {g.name: {"environment": g.environment, **_env_snapshot(bp, None, g.env_vars)} for g in bp.env_var_groups}
