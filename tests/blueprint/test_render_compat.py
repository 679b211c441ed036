"""Never stricter than Render: one minimal blueprint per construct that Render accepts (each was
found in Render's own example repositories) and that validate once refused. Each row says what
validate must say about it now (nothing, or a warning) and, where the value matters, what slipstream
reads. A second table keeps the mistakes that are still errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bp_helpers import errors_of

from slipstream.blueprint import Blueprint, parse_blueprint
from slipstream.blueprint.env import resolve_env
from slipstream.blueprint.plan import plan_blueprint

WEB = "services:\n  - type: web\n    name: api\n    runtime: node\n    startCommand: node s.js\n"
ENV = WEB + "    envVars:\n"


def _env(bp: Blueprint, service: str = "api") -> dict[str, str | None]:
    return {str(e.key): e.value for e in bp.service(service).env_vars if e.key}


# (id, blueprint, fragment of the one warning it must produce or None for none, check of the result)
ACCEPTED: list[tuple[str, str, str | None, Callable[[Blueprint], Any] | None]] = [
    ("spec version", 'version: "1"\n' + WEB, None, None),
    ("spec version unquoted", "version: 1\n" + WEB, None, None),
    (
        "env key with dots",
        ENV + "      - key: discovery.type\n        value: single-node\n",
        None,
        lambda bp: _env(bp)["discovery.type"] == "single-node",
    ),
    ("service name with capitals", WEB.replace("name: api", "name: pgAdmin"), None, None),
    ("database name with underscore", WEB + "databases:\n  - name: postgres_db\n", None, None),
    (
        "database name with a space",
        WEB + "databases:\n  - name: private database\n",
        "Render accepts the database name 'private database'",
        None,
    ),
    (
        "fromService names itself for a Render variable",
        ENV + "      - key: APP_URL\n        fromService: {type: web, name: api, envVarKey: RENDER_EXTERNAL_URL}\n",
        None,
        None,
    ),
    (
        "fromService copies a Render variable of another service",
        ENV
        + "      - key: CMS\n        fromService: {type: web, name: cms, envVarKey: RENDER_EXTERNAL_HOSTNAME}\n"
        + "  - type: web\n    name: cms\n    runtime: node\n    startCommand: node cms.js\n",
        None,
        None,
    ),
    (
        "fromService names itself for one of its own keys",
        ENV
        + "      - key: A\n        value: x\n"
        + "      - key: B\n        fromService: {type: web, name: api, envVarKey: A}\n",
        None,
        None,
    ),
    (
        "envVarKey the file does not declare",
        ENV
        + "      - key: T\n        fromService: {type: pserv, name: p, envVarKey: SET_IN_DASHBOARD}\n"
        + "  - type: pserv\n    name: p\n    runtime: node\n    startCommand: node p.js\n",
        "service 'p' declares no env var 'SET_IN_DASHBOARD' in this file",
        None,
    ),
    (
        "top-level group linked from an environment",
        "envVarGroups:\n  - name: shared\n    envVars:\n      - {key: A, value: x}\n"
        "projects:\n  - name: p\n    environments:\n      - name: prod\n        services:\n"
        "          - type: web\n            name: api\n            runtime: node\n"
        "            startCommand: node s.js\n            envVars:\n              - fromGroup: shared\n",
        None,
        None,
    ),
    (
        "group kept in the workspace",
        ENV + "      - fromGroup: made-in-dashboard\n",
        "env var group 'made-in-dashboard' is not declared in this file",
        None,
    ),
    (
        "database kept in the workspace",
        ENV + "      - key: DATABASE_URL\n        fromDatabase: {name: existing-db, property: connectionString}\n",
        "database 'existing-db' is not declared in this file",
        None,
    ),
    (
        "service kept in the workspace",
        ENV + "      - key: H\n        fromService: {type: pserv, name: elsewhere, property: hostport}\n",
        "service 'elsewhere' is not declared in this file",
        None,
    ),
    (
        "fromDatabase names a read replica",
        ENV
        + "      - key: READ_URL\n        fromDatabase: {name: db-replica, property: connectionString}\n"
        + "databases:\n  - name: db\n    readReplicas:\n      - name: db-replica\n",
        "read replicas are not created here",
        None,
    ),
    (
        "env var prompt fields",
        ENV
        + "      - key: API_KEY\n        sync: false\n        displayName: API key\n"
        + "        description: from the vendor\n        required: true\n        sensitive: true\n",
        None,
        lambda bp: bp.service("api").env_vars[0].sensitive is True,
    ),
    (
        "previewValue",
        ENV + "      - key: MODE\n        value: live\n        previewValue: test\n",
        None,
        lambda bp: _env(bp)["MODE"] == "live",
    ),
    (
        "keyvalue persistenceMode",
        "services:\n  - type: keyvalue\n    name: kv\n    ipAllowList: []\n    persistenceMode: journal-snapshot\n",
        None,
        lambda bp: bp.service("kv").persistence_mode == "journal-snapshot",
    ),
    (
        "environment networking and permissions",
        "projects:\n  - name: p\n    environments:\n      - name: prod\n"
        "        networking: {isolation: disabled}\n        permissions: {protection: disabled}\n"
        "        services:\n          - type: worker\n            name: w\n            runtime: node\n"
        "            startCommand: node w.js\n",
        None,
        None,
    ),
    (
        "environment isolation enabled",
        "projects:\n  - name: p\n    environments:\n      - name: prod\n"
        "        networking: {isolation: enabled}\n"
        "        services:\n          - type: worker\n            name: w\n            runtime: node\n"
        "            startCommand: node w.js\n",
        "network isolation is not enforced here",
        lambda bp: bp.environments[0].network_isolated is True,
    ),
    (
        "workflow service without startCommand",
        "services:\n  - type: workflow\n    name: wf\n    runtime: python\n    buildCommand: pip install -r r.txt\n",
        "workflow services (Render Workflows) are not provided by slipstream",
        None,
    ),
    (
        "known key in other letter case",
        "services:\n  - type: pserv\n    name: p\n    runtime: docker\n    dockerFilePath: ./x/Dockerfile\n",
        "'dockerFilePath' is read as 'dockerfilePath'",
        lambda bp: bp.service("p").dockerfile_path == "./x/Dockerfile",
    ),
    (
        "static route placeholder destination",
        "services:\n  - type: web\n    name: site\n    runtime: static\n    staticPublishPath: dist\n"
        "    routes:\n      - {type: rewrite, source: /api/*, destination: replace_with_api_url/*}\n",
        "is neither a path nor an http(s) URL",
        None,
    ),
    (
        "unknown key that is no typo",
        WEB + "    maintenanceMode: {enabled: false}\n",
        "key 'maintenanceMode' is not understood by slipstream and is ignored",
        None,
    ),
    (
        "renderSubdomainPolicy",
        WEB.replace("type: web\n", "type: web\n    domains: [app.example.com]\n")
        + "    renderSubdomainPolicy: disabled\n",
        "slipstream always answers at api.localhost",
        None,
    ),
    (
        "ipAllowList on a web service",
        WEB + "    ipAllowList:\n      - source: 203.0.113.4/30\n",
        "ipAllowList is not enforced for a web service here",
        None,
    ),
    (
        "env var with no source",
        ENV + "      - key: NODE_ENV\n",
        "has no value source",
        lambda bp: "NODE_ENV" in _env(bp),
    ),
    (
        "generateValue false alone",
        ENV + "      - key: JWT_SECRET\n        generateValue: false\n",
        "'generateValue: false' and 'sync: true' are not sources",
        None,
    ),
    ("generation: off is the word off", "previews:\n  generation: off\n" + WEB, None, None),
    (
        "autoDeployTrigger: off unquoted",
        WEB + "    autoDeployTrigger: off\n",
        None,
        lambda bp: bp.service("api").auto_deploy_trigger == "off",
    ),
    (
        "number where a string goes",
        ENV + "      - key: PORT\n        value: 8080\n      - key: V\n        value: 1.10\n",
        None,
        lambda bp: _env(bp) == {"PORT": "8080", "V": "1.10"},
    ),
    (
        "postgresMajorVersion as a number",
        WEB + "databases:\n  - name: db\n    postgresMajorVersion: 16\n",
        None,
        lambda bp: bp.database("db").postgres_major_version == "16",
    ),
    (
        "buildCommand: true",
        "services:\n  - type: web\n    name: site\n    runtime: static\n    buildCommand: true\n"
        "    staticPublishPath: .\n",
        None,
        lambda bp: bp.service("site").build_command == "true",
    ),
    (
        "whole number written as 10.0",
        "services:\n  - type: pserv\n    name: p\n    runtime: node\n    startCommand: x\n"
        "    disk: {name: d, mountPath: /data, sizeGB: 10.0}\n",
        None,
        lambda bp: bp.service("p").disk is not None and bp.service("p").disk.size_gb == 10,
    ),
    (
        "YAML 1.1 y for true",
        ENV + "      - key: S\n        generateValue: y\n",
        None,
        lambda bp: bp.service("api").env_vars[0].generate_value is True,
    ),
    ("plan spelled differently", WEB + "databases:\n  - name: db\n    plan: Basic-1gb\n", None, None),
    (
        "a region Render may have opened since",
        WEB + "    region: london\n",
        "region 'london' is not one slipstream knows",
        lambda bp: bp.service("api").region == "london",
    ),
    ("a custom domain in capitals", WEB + "    domains: [WWW.Example.com]\n", None, None),
    ("previews kept a long time", "previews:\n  expireAfterDays: 400\n" + WEB, None, None),
]


@pytest.mark.parametrize(("text", "warning", "check"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_render_accepts_so_do_we(text: str, warning: str | None, check: Callable[[Blueprint], Any] | None) -> None:
    bp = parse_blueprint(text)
    messages = [w.message for w in bp.warnings]
    if warning is None:
        assert not [m for m in messages if "not understood" in m or "not declared" in m], messages
    else:
        assert any(warning in m for m in messages), messages
    if check is not None:
        assert check(bp)
    plan_blueprint(bp, {})  # and it plans against an empty state


# (id, blueprint, fragment of the error, fragment of its hint)
STILL_ERRORS = [
    (
        "typo of a known key",
        WEB + "    buildComand: npm ci\n",
        "unknown key 'buildComand'",
        "did you mean 'buildCommand'?",
    ),
    (
        "typo with swapped letters",
        ENV + "      - fromGourp: shared\n",
        "unknown key 'fromGourp'",
        "did you mean 'fromGroup'?",
    ),
    (
        "both spellings of one key",
        "services:\n  - type: pserv\n    name: p\n    runtime: docker\n"
        "    dockerfilePath: ./Dockerfile\n    dockerFilePath: ./x/Dockerfile\n",
        "unknown key 'dockerFilePath'",
        "did you mean 'dockerfilePath'?",
    ),
    ("a known mistake", WEB + "    port: 3000\n", "unknown key 'port'", "$PORT"),
    ("spec version 2", 'version: "2"\n' + WEB, "'2' is not a valid version", None),
    (
        "typo of a declared group",
        ENV + "      - fromGroup: sharde\nenvVarGroups:\n  - name: shared\n",
        "no env var group named 'sharde'",
        "did you mean 'shared'?",
    ),
    (
        "database of another environment",
        "projects:\n  - name: p\n    environments:\n      - name: a\n        databases:\n          - name: db\n"
        "      - name: b\n        services:\n          - type: worker\n            name: w\n"
        "            runtime: node\n            startCommand: x\n            envVars:\n"
        "              - key: D\n                fromDatabase: {name: db, property: host}\n",
        "database 'db' is declared outside environment 'b'",
        None,
    ),
    ("typo of a region", WEB + "    region: oregn\n", "'oregn' is not a region", "did you mean 'oregon'?"),
    ("env key with '='", ENV + "      - key: A=B\n        value: x\n", "'A=B' is not a valid env var name", None),
    ("a quoted true is not a boolean", ENV + "      - key: S\n        generateValue: 'true'\n", "must be true", None),
    ("keyvalue without ipAllowList", "services:\n  - type: keyvalue\n    name: kv\n", "ipAllowList", None),
    (
        "a self-reference that loops",
        ENV + "      - key: A\n        fromService: {type: web, name: api, envVarKey: A}\n",
        "envVarKey references form a loop",
        None,
    ),
]


@pytest.mark.parametrize(("text", "message", "hint"), [r[1:] for r in STILL_ERRORS], ids=[r[0] for r in STILL_ERRORS])
def test_still_an_error(text: str, message: str, hint: str | None) -> None:
    exc = errors_of(text)
    matching = [p for p in exc.problems if message in p.message]
    assert matching, str(exc)
    if hint is not None:
        assert hint in (matching[0].hint or ""), str(matching[0])


FACTS: dict[str, Any] = dict(generated={}, synced={})


def test_render_variables_and_self_references_resolve() -> None:
    bp = parse_blueprint(
        ENV
        + "      - key: SELF_URL\n        fromService: {type: web, name: api, envVarKey: RENDER_EXTERNAL_URL}\n"
        + "      - key: OTHER_HOST\n        fromService: {type: pserv, name: p, envVarKey: RENDER_EXTERNAL_HOSTNAME}\n"
        + "      - key: OTHER_NAME\n        fromService: {type: pserv, name: p, envVarKey: RENDER_SERVICE_NAME}\n"
        + "      - key: COPY\n        fromService: {type: web, name: api, envVarKey: BASE}\n"
        + "      - key: BASE\n        value: b\n"
        + "  - type: pserv\n    name: p\n    runtime: node\n    startCommand: x\n"
    )
    services = {
        "api": {"host": "api.localhost", "port": "8080", "hostport": "api.localhost:8080"},
        "p": {"host": "127.0.0.1", "port": "4100", "hostport": "127.0.0.1:4100", "env": {}},
    }
    env = resolve_env(bp, "api", databases={}, services=services, **FACTS)
    assert env == {
        "SELF_URL": "http://api.localhost:8080",
        "OTHER_HOST": "",  # a private service has no external host name
        "OTHER_NAME": "p",
        "COPY": "b",
        "BASE": "b",
    }


def test_workspace_references_set_nothing_and_replicas_read_the_primary() -> None:
    bp = parse_blueprint(
        ENV
        + "      - fromGroup: made-in-dashboard\n"
        + "      - key: OLD_DB\n        fromDatabase: {name: existing-db, property: connectionString}\n"
        + "      - key: READ_URL\n        fromDatabase: {name: db-replica, property: connectionString}\n"
        + "      - key: ELSEWHERE\n        fromService: {type: pserv, name: elsewhere, property: hostport}\n"
        + "      - key: EMPTY\n"
        + "databases:\n  - name: db\n    readReplicas:\n      - name: db-replica\n"
    )
    env = resolve_env(bp, "api", databases={"db": {"connectionString": "postgresql://db"}}, services={}, **FACTS)
    assert env == {"READ_URL": "postgresql://db"}
