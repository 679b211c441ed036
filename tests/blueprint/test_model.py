"""A valid blueprint becomes the typed model the engine uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from slipstream.blueprint import Blueprint, Service, parse_blueprint

TEXT = """\
previewsEnabled: true
databases:
  - name: db
    postgresMajorVersion: 16
envVarGroups:
  - name: shared
    envVars:
      - {key: LOG_LEVEL, value: info}
services:
  - type: web
    name: api
    env: python
    autoDeploy: true
    buildCommand: pip install -r requirements.txt
    startCommand: gunicorn app:app
    healthCheckPath: /healthz
    disk: {name: data, mountPath: /var/data}
    envVars:
      - key: DATABASE_URL
        fromDatabase: {name: db, property: connectionString}
      - fromGroup: shared
  - type: web
    name: site
    runtime: static
    staticPublishPath: dist
    routes: [{type: rewrite, source: /*, destination: /index.html}]
    headers: [{path: /*, name: X-Frame-Options, value: DENY}]
  - type: redis
    name: cache
    ipAllowList: []
projects:
  - name: shop
    environments:
      - name: prod
        services:
          - {type: worker, name: shop-jobs, runtime: node, startCommand: node jobs.js}
"""


@pytest.fixture(scope="module")
def bp() -> Blueprint:
    return parse_blueprint(TEXT)


def test_defaults_and_deprecations(bp: Blueprint) -> None:
    api = bp.service("api")
    assert (api.runtime, api.auto_deploy_trigger, api.num_instances, api.max_shutdown_delay_seconds) == (
        "python",
        "commit",
        1,
        30,
    )
    assert api.disk is not None and api.disk.size_gb == 10 and api.disk.mount_path == "/var/data"
    assert bp.service("cache").type == "keyvalue"
    assert bp.previews.generation == "automatic"
    assert bp.database("db").postgres_major_version == "16"
    messages = " | ".join(w.message for w in bp.warnings)
    for old in (
        "'env' is deprecated",
        "'autoDeploy' is deprecated",
        "type 'redis' is deprecated",
        "'previewsEnabled' is deprecated",
    ):
        assert old in messages


def test_static_site(bp: Blueprint) -> None:
    site = bp.service("site")
    assert site.is_static and not bp.service("api").is_static
    assert site.routes[0].destination == "/index.html"
    assert (site.headers[0].name, site.headers[0].value) == ("X-Frame-Options", "DENY")


def test_environments_are_flattened(bp: Blueprint) -> None:
    assert [s.name for s in bp.services] == ["api", "site", "cache", "shop-jobs"]
    jobs = bp.service("shop-jobs")
    assert (jobs.project, jobs.environment) == ("shop", "prod")
    assert bp.service("api").environment is None
    assert [(e.project, e.name) for e in bp.environments] == [("shop", "prod")]


def test_lookup_and_aliases(bp: Blueprint) -> None:
    with pytest.raises(KeyError):
        bp.service("nope")
    api = bp.service("api")
    assert api.env_vars[0].from_database is not None
    assert api.env_vars[0].source == "fromDatabase" and api.env_vars[1].source == "fromGroup"
    dumped = api.model_dump(by_alias=True)
    assert "healthCheckPath" in dumped and "maxShutdownDelaySeconds" in dumped
    assert Service.model_validate(dumped).model_dump() == api.model_dump()
    assert Service(name="x", type="worker", runtime="python", start_command="x").num_instances == 1


def test_models_are_frozen(bp: Blueprint) -> None:
    with pytest.raises(ValidationError):
        bp.service("api").name = "other"  # type: ignore[misc]


def test_parsing_is_deterministic() -> None:
    assert parse_blueprint(TEXT) == parse_blueprint(TEXT)
