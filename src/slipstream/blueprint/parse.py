"""``parse_blueprint``: text in, a valid :class:`Blueprint` or one :class:`BlueprintError` out.

Lifecycle of a parse:
1. ``yamltree.load_tree`` decodes and composes the YAML into a located tree.
2. ``convert.read_model`` reads the tree into a :class:`Document` (structure, types, unknown and
   deprecated keys); resources with errors are dropped so the rest is still checked.
3. ``inventory`` flattens root, ``ungrouped`` and project resources with their paths and scopes.
4. ``checks``, ``envcheck`` and ``manifest`` check names, per-type rules, env sources,
   references and the env manifest, and warn about what slipstream does differently.
5. No errors: a frozen :class:`Blueprint` with ``warnings``. Otherwise: ``BlueprintError`` with
   every problem in file order.
"""

from __future__ import annotations

from pathlib import Path as FilePath

from slipstream.blueprint import checks, envcheck, manifest
from slipstream.blueprint.convert import INVALID, read_model
from slipstream.blueprint.inventory import build_inventory
from slipstream.blueprint.model import Blueprint, Document, EnvironmentRef, Previews
from slipstream.blueprint.problems import BlueprintError, Collector, Problem, sorted_problems
from slipstream.blueprint.yamltree import MAX_BYTES, load_tree


def parse_blueprint(text: str | bytes, filename: str = "render.yaml") -> Blueprint:
    """Parse and check a render.yaml; raise :class:`BlueprintError` listing every problem."""
    out = Collector(filename)
    tree = load_tree(text, out)
    if tree is None:
        raise out.fail()
    doc = read_model(tree, Document, (), out)
    if doc is INVALID:
        raise out.fail()
    inv = build_inventory(doc, out)
    checks.check_document(doc, inv, out)
    checks.check_names(inv, out)
    for s in inv.services:
        checks.check_service(s, out)
        envcheck.check_entries(s.obj.env_vars, s.path + ("envVars",), out, group=False)
    for g in inv.groups:
        envcheck.check_entries(g.obj.env_vars, g.path + ("envVars",), out, group=True)
    for d in inv.databases:
        checks.check_database(d, out)
    envcheck.check_references(inv, out)
    manifest.check_manifests(inv, out)
    if out.errors:
        raise out.fail()
    bp = Blueprint(
        file=filename,
        services=[p.obj.model_copy(update={"project": p.scope[0], "environment": p.scope[1]}) for p in inv.services],
        databases=[p.obj.model_copy(update={"project": p.scope[0], "environment": p.scope[1]}) for p in inv.databases],
        env_var_groups=[
            p.obj.model_copy(update={"project": p.scope[0], "environment": p.scope[1]}) for p in inv.groups
        ],
        previews=doc.previews or Previews(),
        environments=[
            EnvironmentRef(
                project=e.project,
                name=e.name,
                network_isolated=e.network_isolated,
                protection_status=e.protection_status,
            )
            for e in inv.environments
        ],
        warnings=sorted_problems(out.warnings),
    )
    bp._paths.update({("service", p.obj.name): p.path for p in inv.services})
    bp._paths.update({("database", p.obj.name): p.path for p in inv.databases})
    bp._paths.update({("group", p.obj.name): p.path for p in inv.groups})
    bp._marks.update(out.value_marks)
    bp._key_marks.update(out.key_marks)
    bp._labels.update(out.labels)
    return bp


def load_blueprint(path: FilePath | str) -> Blueprint:
    """Read ``path`` and parse it; a missing or unreadable file is a :class:`BlueprintError` too."""
    path = FilePath(path)
    try:
        with open(path, "rb") as f:  # one byte past the cap is enough to refuse it (/dev/zero never ends)
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        problem = Problem(
            str(path),
            0,
            0,
            "",
            f"cannot read the file: {exc.strerror or exc}",
            "check the path (slipstream looks for render.yaml by default)",
        )
        raise BlueprintError([problem]) from None
    return parse_blueprint(data, filename=str(path))


def collector_for(bp: Blueprint) -> Collector:
    """A collector that places problems of a parsed blueprint at their lines (for later checks)."""
    out = Collector(bp.file)
    out.value_marks.update(bp._marks)
    out.key_marks.update(bp._key_marks)
    out.labels.update(bp._labels)
    return out
