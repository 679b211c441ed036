"""Each row: a small blueprint, the place and the message of the problem it must produce."""

from __future__ import annotations

import pytest
from bp_helpers import errors_of

from slipstream.blueprint import BlueprintError, Problem, parse_blueprint

WEB = "services:\n  - type: web\n    name: api\n    runtime: python\n    startCommand: gunicorn app:app\n"

# (id, yaml, line, column, path, message fragment, hint fragment)
ROWS = [
    (
        "unknown key with suggestion",
        WEB + "    helthCheckPath: /h\n",
        6,
        5,
        "services[0] (api).helthCheckPath",
        "unknown key 'helthCheckPath'",
        "did you mean 'healthCheckPath'?",
    ),
    (
        "unknown key with known advice",
        WEB + "    healthCheckInterval: 5\n",
        6,
        5,
        "services[0] (api).healthCheckInterval",
        "unknown key",
        "no health-check timing fields",
    ),
    (
        "bad enum with suggestion",
        WEB.replace("type: web", "type: wbe"),
        2,
        11,
        "services[0] (api).type",
        "'wbe' is not a valid type",
        "did you mean 'web'?",
    ),
    (
        "health check path",
        WEB + "    healthCheckPath: healthz\n",
        6,
        22,
        "services[0] (api).healthCheckPath",
        "must start with '/'",
        "'/healthz'",
    ),
    (
        "duplicate key",
        WEB + "    name: again\n",
        6,
        5,
        "services[0] (api).name",
        "duplicate key 'name' (first used on line 3)",
        None,
    ),
    (
        "quoted number",
        WEB + '    numInstances: "2"\n',
        6,
        19,
        "services[0] (api).numInstances",
        "must be a whole number, not '2'",
        "remove the quotes",
    ),
    (
        "number out of range",
        WEB + "    maxShutdownDelaySeconds: 301\n",
        6,
        30,
        "services[0] (api).maxShutdownDelaySeconds",
        "must be between 1 and 300, not 301",
        None,
    ),
    (
        "bool as string",
        WEB + '    autoDeploy: "false"\n',
        6,
        17,
        "services[0] (api).autoDeploy",
        "must be true or false",
        "remove the quotes",
    ),
    (
        "missing name",
        "services:\n  - type: web\n    runtime: python\n    startCommand: x\n",
        2,
        5,
        "services[0]",
        "missing required key 'name'",
        "unique name",
    ),
    (
        "missing runtime",
        "services:\n  - type: web\n    name: api\n    startCommand: x\n",
        2,
        5,
        "services[0] (api)",
        "missing required key 'runtime'",
        "older files call it 'env'",
    ),
    (
        "missing start command",
        "services:\n  - type: worker\n    name: jobs\n    runtime: node\n",
        2,
        5,
        "services[0] (jobs)",
        "missing required key 'startCommand' for a node worker service",
        "$PORT",
    ),
    (
        "name blank",
        WEB.replace("name: api", "name: ' '"),
        3,
        11,
        "services[0] ( ).name",
        "service names must be 1 to 255 characters",
        None,
    ),
    (
        "name too long",
        WEB.replace("name: api", "name: " + "a" * 256),
        3,
        11,
        "services[0] (" + "a" * 80 + ").name",
        "service names must be 1 to 255 characters",
        None,
    ),
    (
        "duplicate service name",
        WEB + "  - type: worker\n    name: api\n    runtime: python\n    startCommand: x\n",
        7,
        11,
        "services[1] (api).name",
        "service name 'api' is already used by services[0] (api) (line 2)",
        "unique",
    ),
    (
        "env key pattern",
        WEB + "    envVars:\n      - key: A=B\n        value: x\n",
        7,
        14,
        "services[0] (api).envVars[0] (A=B).key",
        "'A=B' is not a valid env var name",
        "'='",
    ),
    (
        "env two sources",
        WEB + "    envVars:\n      - key: A\n        value: x\n        sync: false\n",
        7,
        9,
        "services[0] (api).envVars[0] (A)",
        "cannot combine 'value' and 'sync'",
        None,
    ),
    (
        "env no key",
        WEB + "    envVars:\n      - value: x\n",
        7,
        9,
        "services[0] (api).envVars[0]",
        "needs a 'key'",
        None,
    ),
    (
        "env duplicate key",
        WEB + "    envVars:\n      - key: A\n        value: x\n      - key: A\n        value: y\n",
        9,
        14,
        "services[0] (api).envVars[1] (A).key",
        "already set by entry [0]",
        None,
    ),
    (
        "fromGroup with key",
        WEB + "    envVars:\n      - fromGroup: g\n        key: A\nenvVarGroups:\n  - name: g\n",
        7,
        9,
        "services[0] (api).envVars[0] (A)",
        "a fromGroup entry takes no other keys (found key)",
        None,
    ),
    (
        "unknown database",
        WEB + "    envVars:\n      - key: DB\n        fromDatabase: {name: dbx, property: host}\n"
        "databases:\n  - name: db\n",
        8,
        30,
        "services[0] (api).envVars[0] (DB).fromDatabase.name",
        "no database named 'dbx'",
        "did you mean 'db'?",
    ),
    (
        "bad database property",
        WEB + "    envVars:\n      - key: DB\n        fromDatabase: {name: db, property: url}\n"
        "databases:\n  - name: db\n",
        8,
        44,
        "services[0] (api).envVars[0] (DB).fromDatabase.property",
        "'url' is not a valid property",
        None,
    ),
    (
        "fromService wrong type",
        WEB + "    envVars:\n      - key: H\n        fromService: {type: pserv, name: w, property: host}\n"
        "  - type: worker\n    name: w\n    runtime: python\n    startCommand: x\n",
        8,
        29,
        "services[0] (api).envVars[0] (H).fromService.type",
        "'w' is a worker service, not pserv",
        "type: worker",
    ),
    (
        "fromService worker property",
        WEB + "    envVars:\n      - key: H\n        fromService: {type: worker, name: w, property: host}\n"
        "  - type: worker\n    name: w\n    runtime: python\n    startCommand: x\n",
        8,
        56,
        "services[0] (api).envVars[0] (H).fromService.property",
        "a worker service has no property 'host'",
        "envVarKey",
    ),
    (
        "fromService missing env key",
        WEB + "    envVars:\n      - key: H\n        fromService: {type: worker, name: w, envVarKey: TOKN}\n"
        "  - type: worker\n    name: w\n    runtime: python\n    startCommand: x\n    envVars: [{key: TOKEN, generateValue: true}]\n",
        8,
        57,
        "services[0] (api).envVars[0] (H).fromService.envVarKey",
        "service 'w' has no env var 'TOKN'",
        "did you mean 'TOKEN'?",
    ),
    (
        "fromService both",
        WEB
        + "    envVars:\n      - key: H\n        fromService: {type: pserv, name: p, property: host, envVarKey: X}\n"
        "  - type: pserv\n    name: p\n    runtime: python\n    startCommand: x\n",
        8,
        22,
        "services[0] (api).envVars[0] (H).fromService",
        "exactly one of 'property' or 'envVarKey'",
        None,
    ),
    (
        "fromService envVarKey typo",
        WEB
        + "    envVars:\n      - key: H\n        fromService: {type: web, name: api, envVarKey: RENDER_EXTERNAL_ULR}\n",
        8,
        56,
        "services[0] (api).envVars[0] (H).fromService.envVarKey",
        "service 'api' has no env var 'RENDER_EXTERNAL_ULR'",
        "did you mean 'RENDER_EXTERNAL_URL'?",
    ),
    (
        "unknown group",
        WEB + "    envVars:\n      - fromGroup: shraed\nenvVarGroups:\n  - name: shared\n",
        7,
        20,
        "services[0] (api).envVars[0].fromGroup",
        "no env var group named 'shraed'",
        "did you mean 'shared'?",
    ),
    (
        "group with sync is fine but fromDatabase is not",
        "databases:\n  - name: db\nenvVarGroups:\n  - name: g\n    envVars:\n      - key: A\n        fromDatabase: {name: db, property: host}\n",
        7,
        9,
        "envVarGroups[0] (g).envVars[0] (A).fromDatabase",
        "an env var group cannot use fromDatabase",
        "move this entry",
    ),
    (
        "cron schedule fields",
        "services:\n  - type: cron\n    name: c\n    runtime: python\n    startCommand: x\n"
        "    schedule: '*/5 * * * * *'\n",
        6,
        15,
        "services[0] (c).schedule",
        "has 6 fields; a schedule has 5",
        "UTC",
    ),
    (
        "cron schedule range",
        "services:\n  - type: cron\n    name: c\n    runtime: python\n    startCommand: x\n"
        "    schedule: '0 24 * * *'\n",
        6,
        15,
        "services[0] (c).schedule",
        "hour 24 is out of range 0-23",
        None,
    ),
    (
        "cron needs schedule",
        "services:\n  - type: cron\n    name: c\n    runtime: python\n    startCommand: x\n",
        2,
        5,
        "services[0] (c)",
        "missing required key 'schedule' for a cron service",
        None,
    ),
    (
        "cron with disk",
        "services:\n  - type: cron\n    name: c\n    runtime: python\n    startCommand: x\n"
        "    schedule: '@daily'\n    disk: {name: d, mountPath: /d}\n",
        7,
        5,
        "services[0] (c).disk",
        "a cron service cannot have a disk",
        None,
    ),
    (
        "disk and instances",
        WEB + "    numInstances: 2\n    disk: {name: d, mountPath: /data}\n",
        6,
        19,
        "services[0] (api).numInstances",
        "a service with a disk runs exactly one instance, not 2",
        None,
    ),
    (
        "disk relative mount",
        WEB + "    disk: {name: d, mountPath: data}\n",
        6,
        32,
        "services[0] (api).disk.mountPath",
        "must be an absolute path",
        "/var/data",
    ),
    (
        "env group name with a terminal escape",
        'envVarGroups:\n  - name: "g\\e[31m"\n    envVars: [{key: A, value: b}]\n' + WEB,
        2,
        11,
        "envVarGroups[0] (g\\x1b[31m).name",
        "contains control characters",
        "punctuation",
    ),
    (
        "disk name leaves its directory",
        WEB + "    disk: {name: ../.., mountPath: /var/data}\n",
        6,
        18,
        "services[0] (api).disk.name",
        "disk name '../..' must be one path segment",
        "'data'",
    ),
    (
        "disk mounted in a system directory",
        WEB + "    disk: {name: d, mountPath: /etc/cron.d}\n",
        6,
        32,
        "services[0] (api).disk.mountPath",
        "mountPath '/etc/cron.d' is inside '/etc'",
        "/var/data",
    ),
    (
        "scaling bounds",
        WEB + "    scaling: {minInstances: 3, maxInstances: 2, targetCPUPercent: 60}\n",
        6,
        29,
        "services[0] (api).scaling.minInstances",
        "minInstances (3) is larger than maxInstances (2)",
        None,
    ),
    (
        "scaling target",
        WEB + "    scaling: {minInstances: 1, maxInstances: 2}\n",
        6,
        14,
        "services[0] (api).scaling",
        "needs targetCPUPercent or targetMemoryPercent",
        None,
    ),
    (
        "static needs publish path",
        "services:\n  - type: web\n    name: site\n    runtime: static\n",
        2,
        5,
        "services[0] (site)",
        "missing required key 'staticPublishPath' for a static site",
        "./dist",
    ),
    (
        "static on worker",
        "services:\n  - type: worker\n    name: site\n    runtime: static\n    staticPublishPath: dist\n",
        4,
        14,
        "services[0] (site).runtime",
        "runtime 'static' is only valid for type 'web', not 'worker'",
        None,
    ),
    (
        "route source",
        "services:\n  - type: web\n    name: site\n    runtime: static\n    staticPublishPath: dist\n"
        "    routes: [{type: rewrite, source: '*', destination: /index.html}]\n",
        6,
        38,
        "services[0] (site).routes[0].source",
        "route source '*' must start with '/'",
        None,
    ),
    (
        "header name",
        "services:\n  - type: web\n    name: site\n    runtime: static\n    staticPublishPath: dist\n"
        "    headers: [{path: /*, name: 'X Frame', value: DENY}]\n",
        6,
        32,
        "services[0] (site).headers[0] (X Frame).name",
        "'X Frame' is not a valid HTTP header name",
        None,
    ),
    (
        "domain",
        WEB + "    domains: ['https://example.com']\n",
        6,
        15,
        "services[0] (api).domains[0]",
        "'https://example.com' is not a valid domain name",
        "no scheme",
    ),
    (
        "keyvalue needs allow list",
        "services:\n  - type: keyvalue\n    name: cache\n",
        2,
        5,
        "services[0] (cache)",
        "missing required key 'ipAllowList' for a keyvalue service",
        "ipAllowList: []",
    ),
    (
        "bad CIDR",
        "services:\n  - type: keyvalue\n    name: cache\n    ipAllowList: [{source: 10.0.0.0/33}]\n",
        4,
        28,
        "services[0] (cache).ipAllowList[0].source",
        "not an IP address or CIDR block",
        None,
    ),
    (
        "database identifier",
        "databases:\n  - name: db\n    databaseName: My-DB\n",
        3,
        19,
        "databases[0] (db).databaseName",
        "'My-DB' is not a valid PostgreSQL name",
        "'my_db'",
    ),
    (
        "postgres version",
        "databases:\n  - name: db\n    postgresMajorVersion: '9.6'\n",
        3,
        27,
        "databases[0] (db).postgresMajorVersion",
        "'9.6' is not a PostgreSQL major version",
        None,
    ),
    (
        "deprecated and new key",
        WEB.replace("runtime: python", "runtime: python\n    env: python"),
        5,
        5,
        "services[0] (api).env",
        "both 'env' (deprecated) and 'runtime' are set",
        "remove 'env'",
    ),
    (
        "cross-environment reference",
        "projects:\n  - name: p\n    environments:\n      - name: prod\n        databases: [{name: db}]\n"
        "      - name: dev\n        services:\n          - type: web\n            name: api\n            runtime: python\n"
        "            startCommand: x\n            envVars: [{key: D, fromDatabase: {name: db, property: host}}]\n",
        12,
        53,
        "projects[0] (p).environments[1] (dev).services[0] (api).envVars[0] (D).fromDatabase.name",
        "database 'db' is declared outside environment 'dev' of project 'p'",
        "within one environment",
    ),
    (
        "envVarKey loop",
        "services:\n  - {type: worker, name: a, runtime: python, startCommand: x, envVars: [{key: X, fromService: {type: worker, name: b, envVarKey: Y}}]}\n"
        "  - {type: worker, name: b, runtime: python, startCommand: x, envVars: [{key: Y, fromService: {type: worker, name: a, envVarKey: X}}]}\n",
        2,
        95,
        "services[0] (a).envVars[0] (X).fromService",
        "envVarKey references form a loop: a.X -> b.Y -> a.X",
        None,
    ),
    ("root must be a mapping", "- services\n", 1, 1, "", "must be a mapping of keys, not a list", None),
    ("empty file", "", 1, 1, "", "file is empty", "services:"),
    ("nothing declared", "services: []\n", 1, 1, "", "declares no services, databases or envVarGroups", None),
    ("tabs", "services:\n\t- type: web\n", 2, 1, "", "invalid YAML", "spaces, not tabs"),
    ("two documents", "services: []\n---\nservices: []\n", 2, 1, "", "more than one YAML document", "'---'"),
    (
        "python tag",
        "services: !!python/object/apply:os.system ['true']\n",
        1,
        11,
        "services",
        "unsupported YAML tag",
        None,
    ),
    (
        "manifest literal type",
        WEB + "    envVars: [{key: N, value: many}]\n    envManifest: {N: {type: int}}\n",
        6,
        31,
        "services[0] (api).envVars[0] (N).value",
        "'many' is not a whole number (envManifest of service 'api' declares N as int)",
        None,
    ),
    (
        "manifest required",
        WEB + "    envManifest: {API_KEY: {secret: true}}\n",
        6,
        19,
        "services[0] (api).envManifest.API_KEY",
        "API_KEY is required by the envManifest of service 'api'",
        "sync: false",
    ),
    (
        "manifest enum values",
        WEB + "    envManifest: {MODE: {type: enum}}\n",
        6,
        19,
        "services[0] (api).envManifest.MODE",
        "an enum needs 'values'",
        None,
    ),
    (
        "manifest default type",
        WEB + "    envManifest: {DEBUG: {type: bool, default: maybe}}\n",
        6,
        48,
        "services[0] (api).envManifest.DEBUG.default",
        "default 'maybe' is not a boolean",
        None,
    ),
    (
        "manifest secret default masked",
        WEB + "    envManifest: {PIN: {type: int, secret: true, default: abc}}\n",
        6,
        59,
        "services[0] (api).envManifest.PIN.default",
        "default '(secret)' is not a whole number",
        None,
    ),
    (
        "bad extension name",
        'databases:\n  - name: db\n    extensions: [pg_trgm, "DROP TABLE"]\n',
        3,
        27,
        "databases[0] (db).extensions[1]",
        "'DROP TABLE' is not a PostgreSQL extension name",
        "pg_trgm",
    ),
    (
        "extension twice",
        "databases:\n  - name: db\n    extensions: [citext, citext]\n",
        3,
        26,
        "databases[0] (db).extensions[1]",
        "extension 'citext' is listed twice",
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "path", "message", "hint"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_problem(text: str, line: int, column: int, path: str, message: str, hint: str | None) -> None:
    exc = errors_of(text)
    matching = [p for p in exc.problems if message in p.message]
    assert matching, f"no problem says {message!r}; got:\n{exc}"
    p = matching[0]
    assert (p.line, p.column, p.path) == (line, column, path), str(p)
    if hint is not None:
        assert p.hint is not None and hint in p.hint, str(p)
    assert p.file == "render.yaml"


def test_all_problems_reported_at_once_in_file_order() -> None:
    text = (
        "services:\n  - type: web\n    name: a\n    runtime: pyhton\n    startCommand: x\n"
        "  - type: web\n    name: b\n    runtime: python\n    startCommand: x\n    healthCheckPath: h\n"
        "  - type: cron\n    name: c\n    runtime: python\n    startCommand: x\n    schedule: nope\n"
    )
    exc = errors_of(text)
    assert [p.line for p in exc.problems] == [4, 10, 15]
    assert "did you mean 'python'?" in (exc.problems[0].hint or "")


def test_error_string_is_one_problem_per_line() -> None:
    exc = errors_of(WEB + "    helthCheckPath: /h\n    numInstances: 0\n")
    lines = str(exc).splitlines()
    assert len(lines) == len(exc.problems) == 2
    assert lines[0] == (
        "render.yaml:6:5: services[0] (api).helthCheckPath: unknown key 'helthCheckPath' "
        "(hint: did you mean 'healthCheckPath'?)"
    )


def test_problem_str_format() -> None:
    p = Problem("render.yaml", 14, 5, "services[2] (api).healthCheckPath", "must start with '/'", "write '/h'")
    assert str(p) == "render.yaml:14:5: services[2] (api).healthCheckPath: must start with '/' (hint: write '/h')"
    assert str(Problem("f.yaml", 0, 0, "", "cannot read the file")) == "f.yaml: cannot read the file"


def test_blueprint_error_is_a_slipstream_error() -> None:
    from slipstream.errors import SlipstreamError

    assert issubclass(BlueprintError, SlipstreamError)


def test_filename_appears_in_problems() -> None:
    with pytest.raises(BlueprintError) as info:
        parse_blueprint("services: 3\n", filename="deploy/render.yaml")
    assert str(info.value).startswith("deploy/render.yaml:1:11: services: must be a list")


def test_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from slipstream.blueprint import load_blueprint

    with pytest.raises(BlueprintError) as info:
        load_blueprint(tmp_path / "render.yaml")
    assert "cannot read the file" in str(info.value)


def test_a_flood_of_problems_is_capped() -> None:
    exc = errors_of("services: [" + ", ".join(["1"] * 800) + "]\n")
    assert len(exc.problems) == 501
    assert exc.problems[-1].message == "... and 300 more problems"


def test_a_file_that_never_ends_is_refused_after_the_cap_not_read_whole() -> None:
    from slipstream.blueprint.parse import load_blueprint

    with pytest.raises(BlueprintError) as caught:
        load_blueprint("/dev/zero")  # read whole, this was a MemoryError
    assert "larger than 1024 KiB" in str(caught.value)
