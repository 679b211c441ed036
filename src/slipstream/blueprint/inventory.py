"""Where every resource of a document sits: its YAML path and its scope (project, environment).

Render resolves ``fromDatabase``/``fromService`` inside one scope: the root lists (and
``ungrouped``) form one scope, each ``projects[].environments[]`` another. A project's own
``envVarGroups`` are visible to all of its environments, and top-level groups to every scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from slipstream.blueprint.model import Database, Document, EnvVarGroup, Service
from slipstream.blueprint.problems import Collector, Path

T = TypeVar("T")
Scope = tuple[str | None, str | None]  # (project, environment); (None, None) is the root
ROOT: Scope = (None, None)


@dataclass(frozen=True)
class Placed(Generic[T]):
    """A resource, its path in the file and its scope."""

    path: Path
    obj: T
    scope: Scope


@dataclass(frozen=True)
class PlacedEnvironment:
    """An environment of a project, with its path."""

    path: Path
    project: str
    name: str
    network_isolated: bool | None
    protection_status: str | None


@dataclass
class Inventory:
    """Every resource of a document, flattened in file order."""

    services: list[Placed[Service]] = field(default_factory=list)
    databases: list[Placed[Database]] = field(default_factory=list)
    groups: list[Placed[EnvVarGroup]] = field(default_factory=list)
    environments: list[PlacedEnvironment] = field(default_factory=list)

    def visible_services(self, scope: Scope) -> list[Placed[Service]]:
        """Services a resource in ``scope`` may reference."""
        return [s for s in self.services if s.scope == scope]

    def visible_databases(self, scope: Scope) -> list[Placed[Database]]:
        """Databases a resource in ``scope`` may reference."""
        return [d for d in self.databases if d.scope == scope]

    def visible_groups(self, scope: Scope) -> list[Placed[EnvVarGroup]]:
        """Env var groups a resource in ``scope`` may attach: its own scope's, its project's, and the
        top level's (on Render those belong to the workspace, so every environment can link them)."""
        project_scope = (scope[0], None)
        return [
            g for g in self.groups if g.scope in (scope, ROOT) or (scope[0] is not None and g.scope == project_scope)
        ]


def build_inventory(doc: Document, out: Collector) -> Inventory:
    """Flatten root, ``ungrouped`` and ``projects[].environments[]`` resources with their paths."""
    inv = Inventory()
    _add(inv, out, (), doc.services, doc.databases, doc.env_var_groups, ROOT)
    if doc.ungrouped is not None:
        u = doc.ungrouped
        _add(inv, out, ("ungrouped",), u.services, u.databases, u.env_var_groups, ROOT)
    for p, project in enumerate(doc.projects):
        base: Path = ("projects", out.source_index(("projects",), p))
        for g, group in enumerate(project.env_var_groups):
            here = base + ("envVarGroups", out.source_index(base + ("envVarGroups",), g))
            inv.groups.append(Placed(here, group, (project.name, None)))
        for e, env in enumerate(project.environments):
            here = base + ("environments", out.source_index(base + ("environments",), e))
            protection = "protected" if env.is_protected else env.protection_status
            inv.environments.append(PlacedEnvironment(here, project.name, env.name, env.is_isolated, protection))
            _add(inv, out, here, env.services, env.databases, env.env_var_groups, (project.name, env.name))
    return inv


def _add(
    inv: Inventory,
    out: Collector,
    base: Path,
    services: list[Service],
    databases: list[Database],
    groups: list[EnvVarGroup],
    scope: Scope,
) -> None:
    def at(key: str, i: int) -> Path:
        return base + (key, out.source_index(base + (key,), i))

    inv.services.extend(Placed(at("services", i), s, scope) for i, s in enumerate(services))
    inv.databases.extend(Placed(at("databases", i), d, scope) for i, d in enumerate(databases))
    inv.groups.extend(Placed(at("envVarGroups", i), g, scope) for i, g in enumerate(groups))


def scope_name(scope: Scope) -> str:
    """Describe a scope for messages."""
    project, env = scope
    if project is None:
        return "the top level of the file"
    if env is None:
        return f"project '{project}'"
    return f"environment '{env}' of project '{project}'"
