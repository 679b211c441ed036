"""The engine's snapshot of an applied blueprint plans as 'unchanged'; edits show as updates."""

from __future__ import annotations

from slipstream.blueprint import parse_blueprint
from slipstream.blueprint.plan import plan_blueprint, snapshot_database, snapshot_groups, snapshot_service

TEXT = """\
databases:
  - name: main
envVarGroups:
  - name: shared
    envVars: [{key: LOG_LEVEL, value: info}]
services:
  - type: web
    name: api
    runtime: python
    startCommand: python app.py
    envVars:
      - {key: MODE, value: fast}
      - {key: SECRET_KEY, value: hunter2-very-secret}
      - {key: DATABASE_URL, fromDatabase: {name: main, property: connectionString}}
      - fromGroup: shared
"""


def snapshot(text: str) -> dict:
    bp = parse_blueprint(text)
    return {
        "services": {s.name: snapshot_service(bp, s) for s in bp.services},
        "databases": {d.name: snapshot_database(d) for d in bp.databases},
        "groups": snapshot_groups(bp),
    }


def test_applied_blueprint_is_unchanged() -> None:
    plan = plan_blueprint(parse_blueprint(TEXT), snapshot(TEXT))
    assert {a.op for a in plan.actions} == {"unchanged"}
    assert not plan.has_changes


def test_edits_are_updates_and_secrets_stay_hidden() -> None:
    edited = TEXT.replace("value: fast", "value: slow").replace("hunter2-very-secret", "other-secret-value")
    plan = plan_blueprint(parse_blueprint(edited), snapshot(TEXT))
    api = next(a for a in plan.actions if a.name == "api")
    shown = " ".join(c.shown for c in api.env)
    assert api.op == "update" and "MODE='slow'" in shown
    # no digest of a secret is kept (it would allow guessing it offline), so a changed secret
    # literal is not seen by plan; apply deploys it all the same
    assert "hunter2" not in str(snapshot(TEXT)) and "other-secret" not in shown
