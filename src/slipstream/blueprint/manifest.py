"""The env manifest: slipstream's extension that declares what a service's env must contain.

A service or env var group may carry ``envManifest``, a mapping from env key to
``{type, required, default, values, secret, description}``. A service's effective manifest is
its groups' manifests (in ``fromGroup`` order) overlaid by its own. ``validate`` checks what the
file alone can show (types of literal values and defaults, required keys that nothing provides);
``check_env`` checks a fully resolved env before every deploy. Without ``envManifest`` a
blueprint is plain Render and none of this applies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from slipstream.blueprint.envcheck import ENV_KEY, declared_keys
from slipstream.blueprint.inventory import Inventory, Placed
from slipstream.blueprint.model import EnvVarGroup, ManifestEntry, Service
from slipstream.blueprint.problems import Collector, Path

BOOL_WORDS = {"true", "false", "1", "0", "yes", "no", "on", "off"}
EXTENSION_NOTE = (
    "envManifest is a slipstream extension: Render's validator rejects files that use "
    "it, so keep it out of files you also sync to Render"
)


@dataclass(frozen=True)
class Rule:
    """One manifest entry and where it was declared."""

    key: str
    entry: ManifestEntry
    path: Path
    owner: str


def check_value(entry: ManifestEntry, value: str) -> str | None:
    """Return None when ``value`` fits ``entry``, else what is wrong with it."""
    if entry.type == "bool" and value.lower() not in BOOL_WORDS:
        return f"'{_show(entry, value)}' is not a boolean (use true or false)"
    if entry.type == "int" and not re.fullmatch(r"[-+]?[0-9]+", value):
        return f"'{_show(entry, value)}' is not a whole number"
    if entry.type == "url":
        parts = urlsplit(value) if value.isprintable() else None
        if parts is None or not parts.scheme or not parts.netloc:
            return f"'{_show(entry, value)}' is not a URL (scheme://host...)"
    if entry.type == "enum" and value not in entry.values:
        return f"'{_show(entry, value)}' is not one of: {', '.join(entry.values)}"
    return None


def _show(entry: ManifestEntry, value: str) -> str:
    return "(secret)" if entry.secret else value[:60]


def rules_for(
    service: Service, groups: Mapping[str, EnvVarGroup], service_path: Path, group_paths: Mapping[str, Path]
) -> dict[str, Rule]:
    """The effective manifest of a service: its groups' rules, overlaid by its own."""
    rules: dict[str, Rule] = {}
    for e in service.env_vars:
        group = groups.get(e.from_group or "")
        if group is not None:
            for key, entry in group.env_manifest.items():
                rules[key] = Rule(key, entry, group_paths[group.name] + ("envManifest", key), f"group '{group.name}'")
    for key, entry in service.env_manifest.items():
        rules[key] = Rule(key, entry, service_path + ("envManifest", key), f"service '{service.name}'")
    return rules


def _literals(
    service: Service,
    groups: Mapping[str, EnvVarGroup],
    service_path: Path,
    group_paths: Mapping[str, Path],
    out: Collector,
) -> dict[str, tuple[str, Path]]:
    values: dict[str, tuple[str, Path]] = {}
    for e in service.env_vars:
        group = groups.get(e.from_group or "")
        if group is not None:
            for here, g in out.items(group_paths[group.name] + ("envVars",), group.env_vars):
                if g.key and g.value is not None:
                    values[g.key] = (g.value, here + ("value",))
    for here, e in out.items(service_path + ("envVars",), service.env_vars):
        if e.key and e.value is not None:
            values[e.key] = (e.value, here + ("value",))
    return values


def check_manifests(inv: Inventory, out: Collector) -> None:
    """What the file alone shows: well-formed rules, literal values and defaults that fit them,
    required keys that some entry provides."""
    owners: list[Placed[Service] | Placed[EnvVarGroup]] = [*inv.services, *inv.groups]
    with_manifest = [p for p in owners if p.obj.env_manifest]
    if not with_manifest:
        return
    first = min(with_manifest, key=lambda p: out.place(p.path + ("envManifest",), key=True))
    out.warn(first.path + ("envManifest",), EXTENSION_NOTE, key=True)
    for p in with_manifest:
        for key, entry in p.obj.env_manifest.items():
            _check_rule(key, entry, p.path + ("envManifest", key), out)
    for s in inv.services:
        visible = {g.obj.name: g for g in inv.visible_groups(s.scope)}
        groups = {name: g.obj for name, g in visible.items()}
        group_paths = {name: g.path for name, g in visible.items()}
        rules = rules_for(s.obj, groups, s.path, group_paths)
        if not rules:
            continue
        declared = declared_keys(s.obj, groups)
        for key, (value, where) in _literals(s.obj, groups, s.path, group_paths, out).items():
            rule = rules.get(key)
            if rule is not None and not (rule.entry.type == "enum" and not rule.entry.values):
                reason = check_value(rule.entry, value)
                if reason:
                    out.error(
                        where, f"{reason} (envManifest of {rule.owner} declares {key} as {_describe(rule.entry)})"
                    )
        for key, rule in rules.items():
            if rule.entry.is_required and key not in declared and key not in out.broken_names:
                out.error(
                    rule.path,
                    f"{key} is required by the envManifest of {rule.owner}, but no "
                    f"envVars entry of service '{s.obj.name}' provides it",
                    f"add '- key: {key}' with 'sync: false' (asked for at apply) or a value, "
                    "or give the rule a default",
                    key=True,
                )


def _check_rule(key: str, entry: ManifestEntry, path: Path, out: Collector) -> None:
    if not ENV_KEY.fullmatch(key):
        out.error(path, f"'{key[:60]}' is not a valid env var name", key=True)
    if entry.type == "enum" and not entry.values:
        out.error(path, "an enum needs 'values', the list of allowed values", key=True)
    if entry.values and entry.type != "enum":
        out.error(
            path + ("values",), f"'values' only applies to type enum, not {entry.type}", "set 'type: enum'", key=True
        )
    if entry.default is not None:
        reason = check_value(entry, entry.default)
        if reason and not (entry.type == "enum" and not entry.values):
            out.error(path + ("default",), f"default {reason}")


def _describe(entry: ManifestEntry) -> str:
    return f"enum of {', '.join(entry.values)}" if entry.type == "enum" else entry.type


def apply_defaults(rules: Mapping[str, Rule], env: Mapping[str, str]) -> dict[str, str]:
    """Return ``env`` plus the default of every rule whose key is missing."""
    merged = dict(env)
    for key, rule in rules.items():
        if key not in merged and rule.entry.default is not None:
            merged[key] = rule.entry.default
    return merged


def check_env(rules: Mapping[str, Rule], env: Mapping[str, str], out: Collector, service_name: str) -> None:
    """Record a problem for every required key missing from ``env`` and every value that does
    not fit its rule."""
    for key, rule in rules.items():
        if key not in env:
            if rule.entry.is_required:
                out.error(
                    rule.path,
                    f"{key} is required by the envManifest of {rule.owner} but "
                    f"service '{service_name}' has no value for it",
                    "set it with 'slipstream env set' or give the rule a default",
                    key=True,
                )
            continue
        reason = check_value(rule.entry, env[key])
        if reason:
            out.error(rule.path, f"{key}: {reason} (service '{service_name}')", key=True)
