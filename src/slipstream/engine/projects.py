"""Projects: every applied blueprint owns its resources, and never touches another's.

A project is named by ``--project``, else by the blueprint's own ``projects:`` entry for a
resource declared in one, else by the directory name of the repository holding the blueprint.
Ownership is recorded when a deploy is queued; a blueprint that declares a name another project
owns is refused before anything changes. ``plan`` compares a blueprint with its own project only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slipstream.blueprint import Blueprint
from slipstream.blueprint.plan import snapshot_database, snapshot_groups
from slipstream.errors import Conflict, InvalidInput
from slipstream.runner import run
from slipstream.state.store import Store

PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
KINDS = ("service", "database", "group", "keyvalue")


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``, or None."""
    r = run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], check=False, timeout=10)
    return Path(r.stdout.strip()) if r.returncode == 0 else None


def check_project(name: str) -> str:
    """``name`` if it can name a project; InvalidInput otherwise (no silent clean-up)."""
    if not PROJECT_NAME.fullmatch(name):
        raise InvalidInput(
            f"project name {name!r} is not valid: use letters, digits, '-', '_' or '.' (at most 63 characters)",
            "pass --project NAME",
        )
    return name


def project_in(bp: Blueprint, kind: str, name: str) -> str | None:
    """The Render project a resource of ``bp`` is declared in (``projects:``), if any."""
    items: list[Any]
    if kind in ("service", "keyvalue"):
        items = bp.services
    elif kind == "database":
        items = bp.databases
    else:
        items = bp.env_var_groups
    found = next((i for i in items if i.name == name), None)
    return getattr(found, "project", None) if found is not None else None


class Projects:
    """Who owns what, and the snapshots 'slipstream plan' compares with."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def project_of(self, path: Path, asked: str | None) -> str:
        """The project a blueprint applies to: asked for, else its repository's directory name."""
        if asked:
            return check_project(asked)
        root = repo_root(path.parent) or path.parent
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", root.name).strip("-.") or "default"
        return check_project(name[:63])

    def check_owners(self, bp: Blueprint, project: str, names: Sequence[str] | None = None) -> None:
        """Conflict (nothing changes) when another project owns a resource ``bp`` declares."""
        wanted = [
            *(("service" if s.type != "keyvalue" else "keyvalue", s.name) for s in bp.services),
            *(("database", d.name) for d in bp.databases),
            *(("group", g.name) for g in bp.env_var_groups),
        ]
        if names is not None:
            wanted = [(k, n) for k, n in wanted if k != "service" or n in names]
        for kind, name in wanted:
            owner = self.store.owners(kind).get(name)
            if owner is not None and owner != (project_in(bp, kind, name) or project):
                what = {"group": "env var group", "keyvalue": "key value"}.get(kind, kind)
                raise Conflict(
                    f"{what} '{name}' belongs to project '{owner}'; project '{project}' cannot use that name",
                    f"rename it in this blueprint, or delete it from '{owner}' first",
                )

    def claim(self, bp: Blueprint, project: str, services: Sequence[str]) -> None:
        """Record this project as the owner of the services deployed and the blueprint's shared parts."""
        resources = [("service", n) for n in services]
        resources += [("keyvalue", s.name) for s in bp.services if s.type == "keyvalue"]
        resources += [("database", d.name) for d in bp.databases] + [("group", g.name) for g in bp.env_var_groups]
        by_project: dict[str, list[tuple[str, str]]] = {}
        for kind, name in resources:
            by_project.setdefault(project_in(bp, kind, name) or project, []).append((kind, name))
        for owner, items in by_project.items():
            self.store.claim(owner, items)

    def record_snapshot(self, bp: Blueprint, project: str) -> None:
        """Remember the databases and groups of an applied blueprint (for 'slipstream plan')."""
        key = f"plan-state:{project}"
        kept = json.loads(self.store.kept_values().get(key, "{}"))
        databases = kept.get("databases", {})
        databases.update({db.name: snapshot_database(db) for db in bp.databases})
        groups = {**kept.get("groups", {}), **snapshot_groups(bp)}
        self.store.keep_value(key, json.dumps({"databases": databases, "groups": groups}, default=str))

    def plan_state(self, project: str | None = None) -> dict[str, Any]:
        """What 'slipstream plan' compares a blueprint with: ``project``'s resources (no secrets),
        and which names other projects own."""
        owners = {kind: self.store.owners(kind) for kind in ("service", "database", "group", "keyvalue")}
        mine = {
            kind: {n for n, p in names.items() if project is None or p == project} for kind, names in owners.items()
        }
        kept = self.store.kept_values()
        snap: dict[str, Any] = {"databases": {}, "groups": {}}
        for key, raw in kept.items():
            if key.startswith("plan-state:") and (project is None or key == f"plan-state:{project}"):
                data = json.loads(raw)
                snap["databases"].update(data.get("databases", {}))
                snap["groups"].update(data.get("groups", {}))
        services = {
            s.name: s.config.get("snapshot", {"type": s.type, "runtime": s.runtime})
            for s in self.store.services()
            if s.name in mine["service"] or (project is None and s.project is None)
        }
        return {
            "project": project,
            "services": services,
            "databases": {n: v for n, v in snap["databases"].items() if n in mine["database"]},
            "groups": {n: v for n, v in snap["groups"].items() if n in mine["group"]},
            "foreign": {k: {n: p for n, p in names.items() if n not in mine[k]} for k, names in owners.items()},
        }
