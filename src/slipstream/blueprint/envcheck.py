"""Env var entries and the references between resources.

Each ``envVars`` entry uses exactly one of Render's six sources (``value``, ``generateValue``,
``sync: false``, ``fromDatabase``, ``fromService``, ``fromGroup``); groups may only hold ``value``
and ``generateValue``. Every reference must name a resource of the same scope, with a property
that resource has, and ``fromService.envVarKey`` chains must not loop.
"""

from __future__ import annotations

import re

from slipstream.blueprint.convert import suggest
from slipstream.blueprint.inventory import Inventory, Placed, scope_name
from slipstream.blueprint.model import EnvVar, EnvVarGroup, Service
from slipstream.blueprint.problems import Collector, Path

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DATABASE_PROPERTIES = ("connectionString", "host", "port", "user", "password", "database")
SERVICE_PROPERTIES = {
    "keyvalue": ("connectionString", "host", "port", "hostport"),
    "web": ("host", "port", "hostport"),
    "pserv": ("host", "port", "hostport"),
    "worker": (),
    "cron": (),
}
SOURCES = "value:, generateValue: true, sync: false, fromDatabase:, fromService: or fromGroup:"


def _sources(e: EnvVar) -> list[str]:
    named = [
        ("value", e.value),
        ("generateValue", e.generate_value),
        ("sync", e.sync),
        ("fromDatabase", e.from_database),
        ("fromService", e.from_service),
    ]
    return [n for n, v in named if v is not None]


def check_entries(env_vars: list[EnvVar], path: Path, out: Collector, *, group: bool) -> None:
    """Each entry has a valid key and exactly one source; keys are unique in the list."""
    first: dict[str, int | str] = {}
    for here, e in out.items(path, env_vars):
        sources = _sources(e)
        if e.from_group is not None:
            extra = (["key"] if e.key is not None else []) + sources
            if group:
                out.error(
                    here + ("fromGroup",),
                    "an env var group cannot attach another group",
                    "attach both groups to the service instead",
                    key=True,
                )
            elif extra:
                out.error(
                    here,
                    f"a fromGroup entry takes no other keys (found {', '.join(extra)})",
                    "put 'fromGroup' in an entry of its own",
                )
            continue
        if e.key is None:
            out.error(
                here,
                "needs a 'key' (or 'fromGroup' to attach a group)",
                f"for example '- key: LOG_LEVEL' with one of {SOURCES}",
            )
        elif not ENV_KEY.fullmatch(e.key):
            out.error(
                here + ("key",),
                f"'{e.key[:60]}' is not a valid env var name",
                "use letters, digits and '_', not starting with a digit",
            )
        elif e.key in first:
            out.error(
                here + ("key",), f"env var '{e.key}' is already set by entry [{first[e.key]}]", "keep one entry per key"
            )
        else:
            first[e.key] = here[-1]
        if len(sources) > 1:
            out.error(
                here,
                f"cannot combine {' and '.join(repr(s) for s in sources)}; an env var has one source",
                "keep one of them",
            )
        elif not sources:
            out.error(here, "has no value source", f"add one of {SOURCES}")
        elif e.generate_value is False:
            out.error(
                here + ("generateValue",),
                "generateValue: false is not a source",
                "set 'generateValue: true' or use 'value:'",
            )
        elif e.sync is True:
            out.error(
                here + ("sync",),
                "sync: true is not a source; only 'sync: false' (a value you give at the first apply) is",
                "use 'sync: false' or 'value:'",
            )
        elif group and sources[0] in ("fromDatabase", "fromService"):
            out.error(
                here + (sources[0],),
                f"an env var group cannot use {sources[0]}",
                "groups hold only value and generateValue; move this entry to the service",
                key=True,
            )
        elif group and e.sync is False:
            out.warn(
                here + ("sync",),
                "sync: false has no effect in an env var group (Render ignores it), so this key will not be set",
                "move the entry to each service that needs it",
                key=True,
            )


def declared_keys(service: Service, groups: dict[str, EnvVarGroup]) -> set[str]:
    """Keys a service ends up with: its groups' keys and its own."""
    keys = {e.key for e in service.env_vars if e.key}
    for e in service.env_vars:
        if e.from_group and e.from_group in groups:
            keys |= {g.key for g in groups[e.from_group].env_vars if g.key}
    return keys


def check_references(inv: Inventory, out: Collector) -> None:
    """Every fromDatabase, fromService and fromGroup resolves within its scope."""
    for p in inv.services:
        seen_groups: set[str] = set()
        for here, e in out.items(p.path + ("envVars",), p.obj.env_vars):
            if e.from_group is not None:
                if e.from_group in seen_groups:
                    out.warn(
                        here + ("fromGroup",), f"group '{e.from_group}' is attached twice", "remove the second entry"
                    )
                seen_groups.add(e.from_group)
                _resolve(
                    inv,
                    "env var group",
                    e.from_group,
                    p.scope,
                    [g.obj.name for g in inv.visible_groups(p.scope)],
                    [g.obj.name for g in inv.groups],
                    here + ("fromGroup",),
                    out,
                )
            if e.from_database is not None:
                _resolve(
                    inv,
                    "database",
                    e.from_database.name,
                    p.scope,
                    [d.obj.name for d in inv.visible_databases(p.scope)],
                    [d.obj.name for d in inv.databases],
                    here + ("fromDatabase", "name"),
                    out,
                )
            if e.from_service is not None:
                _check_from_service(inv, p, e, here + ("fromService",), out)
    _check_key_cycles(inv, out)
    _check_value_ids(inv, out)


def _check_value_ids(inv: Inventory, out: Collector) -> None:
    """Generated and user-given values are stored as '<owner>.<KEY>'; two owners must not clash."""
    first: dict[str, Path] = {}
    owners: list[Placed[Service] | Placed[EnvVarGroup]] = [*inv.services, *inv.groups]
    for p in owners:
        for here, e in out.items(p.path + ("envVars",), p.obj.env_vars):
            if e.key and (e.generate_value or e.sync is False):
                ident = f"{p.obj.name}.{e.key}"
                if ident in first and first[ident][:-1] != p.path:
                    out.error(
                        here + ("key",),
                        f"{e.key} is stored as '{ident}', which "
                        "a service and an env var group of the same name would share",
                        "rename the group or the service",
                    )
                first.setdefault(ident, p.path + ("envVars",))


def _resolve(
    inv: Inventory,
    kind: str,
    name: str,
    scope: tuple[str | None, str | None],
    visible: list[str],
    everywhere: list[str],
    here: Path,
    out: Collector,
) -> bool:
    if name in visible:
        return True
    if name in out.broken_names:
        return False  # the resource itself has errors, reported where it is declared
    if name in everywhere:
        out.error(
            here,
            f"{kind} '{name}' is declared outside {scope_name(scope)}",
            "references resolve within one environment; declare it there too",
        )
    else:
        guess = suggest(name, visible)
        out.error(
            here,
            f"no {kind} named '{name[:60]}' in {scope_name(scope)}",
            f"did you mean '{guess}'?"
            if guess
            else f"declare it under '{'envVarGroups' if kind == 'env var group' else kind + 's'}:' "
            "(slipstream only resolves references within the file)",
        )
    return False


def _check_from_service(inv: Inventory, p: Placed[Service], e: EnvVar, here: Path, out: Collector) -> None:
    ref = e.from_service
    assert ref is not None
    if ref.name == p.obj.name:
        out.error(here + ("name",), "a service cannot reference itself", "use the value directly")
        return
    visible = {s.obj.name: s.obj for s in inv.visible_services(p.scope)}
    if not _resolve(
        inv, "service", ref.name, p.scope, list(visible), [s.obj.name for s in inv.services], here + ("name",), out
    ):
        return
    target = visible[ref.name]
    if target.type != ref.type:
        out.error(
            here + ("type",),
            f"service '{ref.name}' is a {target.type} service, not {ref.type}",
            f"write 'type: {target.type}'",
        )
        return
    if (ref.property is None) == (ref.env_var_key is None):
        out.error(
            here,
            "fromService needs exactly one of 'property' or 'envVarKey'",
            "property: host/port/hostport... to connect, envVarKey: to copy one of its env vars",
        )
        return
    if ref.property is not None:
        allowed = SERVICE_PROPERTIES[target.type]
        if ref.property not in allowed:
            out.error(
                here + ("property",),
                f"a {target.type} service has no property "
                f"'{ref.property}'" + (f"; it has: {', '.join(allowed)}" if allowed else ""),
                "use envVarKey to copy one of its env vars" if not allowed else None,
            )
        return
    groups = {g.obj.name: g.obj for g in inv.visible_groups(p.scope)}
    keys = declared_keys(target, groups)
    if ref.env_var_key not in keys and ref.env_var_key not in out.broken_names:
        guess = suggest(str(ref.env_var_key), sorted(keys))
        out.error(
            here + ("envVarKey",),
            f"service '{ref.name}' has no env var '{ref.env_var_key}'",
            f"did you mean '{guess}'?" if guess else f"declare it in the envVars of '{ref.name}'",
        )


def _check_key_cycles(inv: Inventory, out: Collector) -> None:
    pointer: dict[tuple[str, str], tuple[str, str]] = {}
    where: dict[tuple[str, str], Path] = {}
    for p in inv.services:
        for here, e in out.items(p.path + ("envVars",), p.obj.env_vars):
            if e.key and e.from_service is not None and e.from_service.env_var_key:
                pointer[(p.obj.name, e.key)] = (e.from_service.name, e.from_service.env_var_key)
                where[(p.obj.name, e.key)] = here + ("fromService",)
    reported: set[frozenset[tuple[str, str]]] = set()
    for start in pointer:
        chain = [start]
        node = pointer[start]
        while node in pointer and node not in chain:
            chain.append(node)
            node = pointer[node]
        if node in chain:
            loop = chain[chain.index(node) :]
            key = frozenset(loop)
            if key not in reported:
                reported.add(key)
                text = " -> ".join(f"{s}.{k}" for s, k in loop + [node])
                out.error(
                    where[loop[0]],
                    f"envVarKey references form a loop: {text}",
                    "give one of these keys a value of its own",
                )
