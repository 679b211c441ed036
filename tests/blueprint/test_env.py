"""resolve_env: Render's order and sources, the env manifest, and clear errors when unresolved."""

from __future__ import annotations

import pytest

from slipstream.blueprint import BlueprintError, parse_blueprint
from slipstream.blueprint.env import needed_generated, needed_synced, resolve_env, secret_keys

TEXT = """\
databases:
  - name: db
envVarGroups:
  - name: base
    envVars:
      - {key: LOG_LEVEL, value: info}
      - {key: MODE, value: group}
      - {key: SIGNING_KEY, generateValue: true}
  - name: extra
    envVars:
      - {key: MODE, value: extra}
services:
  - type: web
    name: api
    runtime: python
    startCommand: x
    envVars:
      - {key: MODE, value: own}
      - fromGroup: base
      - fromGroup: extra
      - {key: DATABASE_URL, fromDatabase: {name: db, property: connectionString}}
      - {key: SECRET_KEY, generateValue: true}
      - {key: STRIPE_KEY, sync: false}
      - {key: SEARCH, fromService: {type: pserv, name: search, property: hostport}}
      - {key: TOKEN, fromService: {type: pserv, name: search, envVarKey: SEARCH_TOKEN}}
      - {key: WORKERS, value: "4"}
    envManifest:
      WORKERS: {type: int}
      TIMEOUT: {type: int, default: "30"}
      FEATURE: {type: bool, required: false}
  - type: pserv
    name: search
    runtime: node
    startCommand: node s.js
    envVars:
      - {key: SEARCH_TOKEN, generateValue: true}
"""

FACTS = dict(
    databases={"db": {"connectionString": "postgresql://u:pw@127.0.0.1:5432/db", "host": "127.0.0.1"}},
    services={
        "search": {"host": "127.0.0.1", "port": "4100", "hostport": "127.0.0.1:4100", "env": {"SEARCH_TOKEN": "tok"}}
    },
    generated={"api.SECRET_KEY": "gen-secret", "base.SIGNING_KEY": "gen-sign", "search.SEARCH_TOKEN": "tok"},
    synced={"api.STRIPE_KEY": "sk_live"},
)


def test_resolution_order_and_sources() -> None:
    bp = parse_blueprint(TEXT)
    env = resolve_env(bp, bp.service("api"), **FACTS)  # type: ignore[arg-type]
    assert env == {
        "LOG_LEVEL": "info",
        "MODE": "own",
        "SIGNING_KEY": "gen-sign",
        "DATABASE_URL": "postgresql://u:pw@127.0.0.1:5432/db",
        "SECRET_KEY": "gen-secret",
        "STRIPE_KEY": "sk_live",
        "SEARCH": "127.0.0.1:4100",
        "TOKEN": "tok",
        "WORKERS": "4",
        "TIMEOUT": "30",
    }
    assert list(env)[:3] == ["LOG_LEVEL", "MODE", "SIGNING_KEY"]  # groups first, own entries after


def test_group_order_when_the_service_does_not_set_the_key() -> None:
    bp = parse_blueprint(TEXT.replace("      - {key: MODE, value: own}\n", ""))
    assert resolve_env(bp, "api", **FACTS)["MODE"] == "extra"  # type: ignore[arg-type]


def test_needed_ids() -> None:
    bp = parse_blueprint(TEXT)
    assert needed_generated(bp) == ["api.SECRET_KEY", "search.SEARCH_TOKEN", "base.SIGNING_KEY"]
    assert needed_synced(bp) == ["api.STRIPE_KEY"]


def test_every_unresolved_entry_is_reported_with_its_line() -> None:
    bp = parse_blueprint(TEXT)
    with pytest.raises(BlueprintError) as info:
        resolve_env(bp, "api", databases={}, services={}, generated={}, synced={})
    text = str(info.value)
    lines = text.splitlines()
    assert len(lines) == 6, text
    assert (
        "render.yaml:21:29: services[0] (api).envVars[3] (DATABASE_URL).fromDatabase: database 'db' "
        "is not available yet" in text
    )
    assert "STRIPE_KEY needs a value (it is declared with sync: false)" in text
    assert "--env-file" in text
    assert "no generated value for SIGNING_KEY (base.SIGNING_KEY)" in text


def test_manifest_is_checked_on_the_resolved_env() -> None:
    bp = parse_blueprint(TEXT.replace('value: "4"', "sync: false").replace("STRIPE_KEY, sync", "STRIPE_KEY, sync"))
    facts = dict(FACTS, synced={"api.STRIPE_KEY": "sk", "api.WORKERS": "four"})
    with pytest.raises(BlueprintError) as info:
        resolve_env(bp, "api", **facts)  # type: ignore[arg-type]
    (problem,) = info.value.problems
    assert problem.path == "services[0] (api).envManifest.WORKERS"
    assert problem.message == "WORKERS: 'four' is not a whole number (service 'api')"
    assert problem.line == 28


def test_secret_keys() -> None:
    bp = parse_blueprint(TEXT)
    secrets = secret_keys(bp, "api")
    assert {"SIGNING_KEY", "DATABASE_URL", "SECRET_KEY", "STRIPE_KEY", "TOKEN"} <= secrets
    assert not secrets & {"LOG_LEVEL", "MODE", "SEARCH", "WORKERS", "TIMEOUT"}


def test_sync_false_in_a_group_is_ignored_like_render() -> None:
    text = (
        "envVarGroups:\n  - name: g\n    envVars:\n      - {key: A, sync: false}\n      - {key: B, value: b}\n"
        "services:\n  - {type: worker, name: w, runtime: python, startCommand: x, envVars: [{fromGroup: g}]}\n"
    )
    bp = parse_blueprint(text)
    assert any("sync: false has no effect in an env var group" in w.message for w in bp.warnings)
    assert resolve_env(bp, "w", databases={}, services={}, generated={}, synced={}) == {"B": "b"}
