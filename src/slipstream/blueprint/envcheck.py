"""Env var entries and the references between resources.

Each ``envVars`` entry uses exactly one of Render's six sources (``value``, ``generateValue``,
``sync: false``, ``fromDatabase``, ``fromService``, ``fromGroup``); groups may only hold ``value``
and ``generateValue``. A reference to a resource of the same scope must use a property that
resource has, and ``fromService.envVarKey`` chains must not loop. A reference to a name the file
does not declare is a warning (Render links a resource of that name from the workspace, which
slipstream does not have) unless it is a likely typo of a declared name, which is an error.
"""

from __future__ import annotations

import re

from slipstream.blueprint.convert import likely_typo
from slipstream.blueprint.inventory import Inventory, Placed, scope_name
from slipstream.blueprint.model import Database, EnvVar, EnvVarGroup, Service
from slipstream.blueprint.problems import Collector, Path

# Render takes any name a process environment can hold (Elasticsearch's 'discovery.type' too).
ENV_KEY = re.compile(r"[^=\s\x00-\x1f\x7f]+")
DATABASE_PROPERTIES = ("connectionString", "host", "port", "user", "password", "database")
SERVICE_PROPERTIES = {
    "keyvalue": ("connectionString", "host", "port", "hostport"),
    "web": ("host", "port", "hostport"),
    "pserv": ("host", "port", "hostport"),
    "worker": (),
    "cron": (),
    "workflow": (),
}
# Variables Render sets on every service that ``fromService.envVarKey`` may copy and that
# ``env.resolve_env`` can work out here (the engine sets the same values in each instance).
COPYABLE_PLATFORM_KEYS = (
    "RENDER",
    "IS_PULL_REQUEST",
    "RENDER_SERVICE_NAME",
    "RENDER_SERVICE_TYPE",
    "RENDER_EXTERNAL_HOSTNAME",
    "RENDER_EXTERNAL_URL",
)
SOURCES = "value:, generateValue: true, sync: false, fromDatabase:, fromService: or fromGroup:"


def _sources(e: EnvVar) -> list[str]:
    """The sources an entry sets; 'generateValue: false' and 'sync: true' set none (as in Render)."""
    named = [
        ("value", e.value is not None),
        ("generateValue", bool(e.generate_value)),
        ("sync", e.sync is False),
        ("fromDatabase", e.from_database is not None),
        ("fromService", e.from_service is not None),
    ]
    return [n for n, present in named if present]


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
                "a name is made of characters other than '=', spaces and control characters",
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
            written = (
                " ('generateValue: false' and 'sync: true' are not sources)"
                if (e.generate_value is False or e.sync is True)
                else ""
            )
            out.warn(
                here,
                f"has no value source{written}: Render sets nothing for it and keeps a value set in "
                "the dashboard; slipstream does not set it",
                f"add one of {SOURCES}, or give it with 'slipstream env set'",
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
                    "env var group",
                    e.from_group,
                    p.scope,
                    [g.obj.name for g in inv.visible_groups(p.scope)],
                    [g.obj.name for g in inv.groups],
                    here + ("fromGroup",),
                    out,
                    "its variables are not set here",
                )
            if e.from_database is not None:
                _resolve(
                    "database",
                    e.from_database.name,
                    p.scope,
                    [n for d in inv.visible_databases(p.scope) for n in _database_names(d.obj)],
                    [n for d in inv.databases for n in _database_names(d.obj)],
                    here + ("fromDatabase", "name"),
                    out,
                    f"{e.key} is not set here",
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


def _database_names(d: Database) -> list[str]:
    """Names ``fromDatabase`` may use for ``d``: its own and its read replicas' (served by ``d`` here)."""
    return [d.name, *(r.name for r in d.read_replicas)]


def _resolve(
    kind: str,
    name: str,
    scope: tuple[str | None, str | None],
    visible: list[str],
    everywhere: list[str],
    here: Path,
    out: Collector,
    unset: str,
) -> bool:
    """True when ``name`` is a visible ``kind``; otherwise say why (``unset``: what is lost)."""
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
        return False
    typo = likely_typo(name, visible)
    if typo is not None:
        out.error(here, f"no {kind} named '{name[:60]}' in {scope_name(scope)}", f"did you mean '{typo}'?")
    else:
        out.warn(
            here,
            f"{kind} '{name[:60]}' is not declared in this file: Render links the one of that name "
            f"in your workspace, slipstream has no workspace, so {unset}",
            f"declare it under '{'envVarGroups' if kind == 'env var group' else kind + 's'}:', or "
            "give the values with 'slipstream env set'",
        )
    return False


def _check_from_service(inv: Inventory, p: Placed[Service], e: EnvVar, here: Path, out: Collector) -> None:
    ref = e.from_service
    assert ref is not None
    visible = {s.obj.name: s.obj for s in inv.visible_services(p.scope)}
    names = [s.obj.name for s in inv.services]
    if not _resolve(
        "service", ref.name, p.scope, list(visible), names, here + ("name",), out, f"{e.key} is not set here"
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
    key = str(ref.env_var_key)
    groups = {g.obj.name: g.obj for g in inv.visible_groups(p.scope)}
    keys = declared_keys(target, groups)
    if key in keys or key in COPYABLE_PLATFORM_KEYS or key in out.broken_names:
        return
    typo = likely_typo(key, sorted(keys | set(COPYABLE_PLATFORM_KEYS)))
    if typo is not None:
        out.error(here + ("envVarKey",), f"service '{ref.name}' has no env var '{key}'", f"did you mean '{typo}'?")
    elif key.startswith("RENDER_"):
        out.warn(
            here + ("envVarKey",),
            f"Render sets {key} on '{ref.name}', but slipstream cannot copy it from another service, "
            f"so {e.key} is not set here",
            f"copyable here: {', '.join(COPYABLE_PLATFORM_KEYS)}",
        )
    else:
        out.warn(
            here + ("envVarKey",),
            f"service '{ref.name}' declares no env var '{key}' in this file: Render copies it if it is "
            f"set in the dashboard, slipstream cannot, so {e.key} is not set here",
            f"declare it in the envVars of '{ref.name}', or give {e.key} with 'slipstream env set'",
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
