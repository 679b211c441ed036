"""docs/blueprint-reference.yaml is a valid blueprint that shows every key of the model."""

from __future__ import annotations

import yaml
from bp_helpers import REPO

from slipstream.blueprint import load_blueprint
from slipstream.blueprint import model as m
from slipstream.blueprint.convert import field_aliases

REFERENCE = REPO / "docs" / "blueprint-reference.yaml"
MODELS = [
    m.Document,
    m.Service,
    m.Database,
    m.EnvVarGroup,
    m.EnvVar,
    m.FromDatabase,
    m.FromService,
    m.Disk,
    m.StaticRoute,
    m.Header,
    m.SmokeCheck,
    m.AlertSetting,
    m.ManifestEntry,
    m.Scaling,
    m.BuildFilter,
    m.ServicePreviews,
    m.Previews,
    m.RegistryCredsRef,
    m.RegistryCredential,
    m.Image,
    m.IpAllow,
    m.ReadReplica,
    m.HighAvailability,
    m.Networking,
    m.Permissions,
    m.Environment,
    m.Project,
    m.Ungrouped,
]


def _keys(node: object, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            found.add(str(k))
            _keys(v, found)
    elif isinstance(node, list):
        for item in node:
            _keys(item, found)
    return found


def test_reference_is_valid() -> None:
    bp = load_blueprint(REFERENCE)
    assert len(bp.services) >= 8


def test_reference_shows_every_key_of_the_model() -> None:
    shown = _keys(yaml.safe_load(REFERENCE.read_text()), set())
    missing = {f"{model.__name__}.{alias}" for model in MODELS for alias in field_aliases(model) if alias not in shown}
    assert not missing, f"docs/blueprint-reference.yaml does not show: {sorted(missing)}"


def test_every_model_is_listed_here() -> None:
    models = {c for c in vars(m).values() if isinstance(c, type) and issubclass(c, m.Model)}
    assert models - {m.Model, m.Blueprint, m.EnvironmentRef} == set(MODELS)


def test_reference_mentions_deprecated_keys_and_defaults() -> None:
    text = REFERENCE.read_text()
    for model in MODELS:
        for old in model.DEPRECATED:
            assert f"{old}:" in text, old
    assert "type: redis" in text
    assert text.count("default:") >= 40
