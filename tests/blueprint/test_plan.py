"""plan_blueprint: actions per object, masked env changes, immutable fields, disk notes."""

from __future__ import annotations

import json

from slipstream.blueprint import parse_blueprint
from slipstream.blueprint.plan import env_source, plan_blueprint, render_plan, value_digest

TEXT = """\
databases:
  - name: db
services:
  - type: web
    name: api
    runtime: python
    startCommand: gunicorn app:app
    envVars:
      - {key: API_TOKEN, value: "tok-123456"}
      - {key: GREETING, value: hello}
      - {key: DATABASE_URL, fromDatabase: {name: db, property: connectionString}}
"""


def test_empty_state_creates_everything_in_apply_order() -> None:
    plan = plan_blueprint(parse_blueprint(TEXT), {})
    assert [(a.kind, a.name, a.op) for a in plan.actions] == [
        ("database", "db", "create"),
        ("service", "api", "create"),
    ]
    assert plan.has_changes and not plan.blocked
    assert [e.shown for e in plan.actions[1].env] == [
        "API_TOKEN=(secret)",
        "GREETING='hello'",
        "DATABASE_URL=(from database db: connectionString)",
    ]


def test_secret_values_never_appear_in_any_output() -> None:
    bp = parse_blueprint(TEXT)
    current = {
        "services": {
            "api": {"type": "web", "runtime": "python", "env_keys": ["API_TOKEN"], "env_digests": {"API_TOKEN": "x"}}
        }
    }
    for state in ({}, current):
        plan = plan_blueprint(bp, state)
        assert "tok-123456" not in render_plan(plan)
        assert "tok-123456" not in json.dumps(plan.to_dict(), default=str)


def test_unchanged_when_the_snapshot_matches() -> None:
    bp = parse_blueprint(TEXT)
    current = {
        "databases": {"db": {"environment": None}},
        "services": {
            "api": {
                "type": "web",
                "runtime": "python",
                "start_command": "gunicorn app:app",
                "env_keys": ["API_TOKEN", "GREETING", "DATABASE_URL"],
                "env_sources": {
                    "API_TOKEN": "value",
                    "GREETING": "value",
                    "DATABASE_URL": "fromDatabase:db.connectionString",
                },
                "env_digests": {"API_TOKEN": value_digest("tok-123456"), "GREETING": value_digest("hello")},
            }
        },
    }
    plan = plan_blueprint(bp, current)
    assert [a.op for a in plan.actions] == ["unchanged", "unchanged"]
    assert not plan.has_changes
    current["services"]["api"]["env_digests"]["GREETING"] = value_digest("hi")  # type: ignore[index]
    (change,) = plan_blueprint(bp, current).actions[1].env
    assert (change.op, change.shown) == ("change", "GREETING='hello'")


def test_only_fields_in_the_snapshot_are_compared() -> None:
    bp = parse_blueprint(TEXT)
    plan = plan_blueprint(
        bp, {"services": {"api": {"env_keys": ["API_TOKEN", "GREETING", "DATABASE_URL"]}}, "databases": {"db": {}}}
    )
    assert all(a.op == "unchanged" for a in plan.actions)


def test_immutable_change_blocks() -> None:
    bp = parse_blueprint(TEXT)
    plan = plan_blueprint(bp, {"services": {"api": {"type": "worker", "runtime": "python"}}})
    api = plan.actions[1]
    assert [f.field for f in api.immutable_changes] == ["type"]
    assert plan.blocked
    assert "Apply will refuse" in render_plan(plan)


def test_env_source_descriptors() -> None:
    bp = parse_blueprint(
        TEXT + "      - {key: H, fromService: {type: web, name: other, property: host}}\n"
        "      - {key: K, fromService: {type: web, name: other, envVarKey: X}}\n"
        "      - {key: S, sync: false}\n"
        "  - {type: web, name: other, runtime: node, startCommand: x, envVars: [{key: X, value: y}]}\n"
    )
    sources = [env_source(e) for e in bp.service("api").env_vars]
    assert sources == [
        "value",
        "value",
        "fromDatabase:db.connectionString",
        "fromService:web/other.host",
        "fromService:web/other.env:X",
        "sync",
    ]


def test_environment_filter_and_what_left_the_blueprint_is_kept() -> None:
    bp = parse_blueprint(TEXT)
    current = {"services": {"old": {"type": "worker", "environment": "staging"}}}
    assert [a.name for a in plan_blueprint(bp, current, environment="staging").actions] == ["old"]
    assert plan_blueprint(bp, current).actions[-1].op == "kept"  # apply never deletes


def test_a_database_open_to_every_address_is_warned_about() -> None:
    text = TEXT.replace(
        "  - name: db\n",
        "  - name: db\n    ipAllowList:\n      - {source: 0.0.0.0/0}\n      - {source: 203.0.113.0/24}\n",
    )
    for state in ({}, {"databases": {"db": {"environment": None}}}):
        plan = plan_blueprint(parse_blueprint(text), state)
        out = render_plan(plan)
        assert "! warning: ipAllowList 0.0.0.0/0 lets any address on the internet reach this database" in out
        assert "203.0.113.0/24" not in out  # a narrow rule is fine
    assert "warning" not in render_plan(plan_blueprint(parse_blueprint(TEXT), {}))


def test_extensions_are_planned_and_compared() -> None:
    text = TEXT.replace("  - name: db\n", "  - name: db\n    extensions: [pg_trgm, vector]\n")
    bp = parse_blueprint(text)
    assert bp.databases[0].extensions == ["pg_trgm", "vector"]
    assert "extensions is a slipstream extension" in " ".join(str(w) for w in bp.warnings)
    plan = plan_blueprint(bp, {"databases": {"db": {"environment": None, "extensions": ["pg_trgm"]}}})
    assert "    ~ extensions: ['pg_trgm'] -> ['pg_trgm', 'vector']" in render_plan(plan)


def test_a_name_another_project_owns_blocks_the_plan() -> None:
    bp = parse_blueprint(TEXT)
    plan = plan_blueprint(bp, {"foreign": {"service": {"api": "shop"}, "database": {"db": "shop"}}})
    assert plan.conflicts == ("service 'api' belongs to project 'shop'", "database 'db' belongs to project 'shop'")
    assert plan.blocked
    text = render_plan(plan)
    assert "x service 'api' belongs to project 'shop'" in text
    assert "Apply will refuse: another project owns a name this blueprint declares." in text
