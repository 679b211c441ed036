"""blueprint: render.yaml in, a typed model or precise errors out; env resolution and plans.

Pure: nothing here touches the network, processes or state; the only I/O is reading the file
given to :func:`load_blueprint`. See docs/blueprint.md and docs/blueprint-reference.yaml.
"""

from __future__ import annotations

from slipstream.blueprint.env import needed_generated, needed_synced, resolve_env, secret_keys
from slipstream.blueprint.model import (
    Blueprint,
    Database,
    Disk,
    EnvVar,
    EnvVarGroup,
    FromDatabase,
    FromService,
    Header,
    ManifestEntry,
    Service,
    StaticRoute,
)
from slipstream.blueprint.parse import load_blueprint, parse_blueprint
from slipstream.blueprint.plan import Plan, plan_blueprint, render_plan
from slipstream.blueprint.problems import BlueprintError, Problem

__all__ = [
    "Blueprint",
    "BlueprintError",
    "Database",
    "Disk",
    "EnvVar",
    "EnvVarGroup",
    "FromDatabase",
    "FromService",
    "Header",
    "ManifestEntry",
    "Plan",
    "Problem",
    "Service",
    "StaticRoute",
    "load_blueprint",
    "needed_generated",
    "needed_synced",
    "parse_blueprint",
    "plan_blueprint",
    "render_plan",
    "resolve_env",
    "secret_keys",
]
