"""Importers: Procfile and fly.toml become a render.yaml that validates as written and keeps what
has an equivalent (release command, health check, memory cap, machine count, disk), with notes
as comments for the rest. One row per input shape; every row's output is parsed back."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from slipstream.blueprint import BlueprintError, parse_blueprint
from slipstream.blueprint.importers import (
    Imported,
    build_from_fly_toml,
    build_from_procfile,
    render_imported,
    runtime_of_command,
)

HEROKU = """\
# comments and blank lines are fine

web: gunicorn app:app --bind 0.0.0.0:$PORT
worker: celery -A app worker
release: alembic upgrade head
clock: python clock.py
"""

# (id, Procfile, keyword arguments, {service name: keys it must have}, fragments the notes must hold)
PROCFILES: list[tuple[str, str, dict[str, Any], dict[str, dict[str, Any]], list[str]]] = [
    (
        "heroku python app",
        HEROKU,
        {"runtime": "python"},
        {
            "shop": {
                "type": "web",
                "runtime": "python",
                "buildCommand": "pip install -r requirements.txt",
                "startCommand": "gunicorn app:app --bind 0.0.0.0:$PORT",
                "preDeployCommand": "alembic upgrade head",
            },
            "shop-worker": {"type": "worker", "startCommand": "celery -A app worker"},
            "shop-clock": {"type": "worker", "startCommand": "python clock.py"},
        },
        ["'clock' became a worker", "dyno counts"],
    ),
    (
        "node commands, no files",
        "web: node server.js\nworker: npm run worker\nrelease: npx prisma migrate deploy\n",
        {},
        {
            "shop": {"runtime": "node", "buildCommand": "npm install", "preDeployCommand": "npx prisma migrate deploy"},
            "shop-worker": {"runtime": "node"},
        },
        [],
    ),
    (
        "yarn with its lock file",
        "web: yarn start\n",
        {"files": ["package.json", "yarn.lock"]},
        {"shop": {"runtime": "node", "buildCommand": "yarn install --frozen-lockfile"}},
        [],
    ),
    (
        "bun runs in the node runtime",
        "web: bun run src/index.ts\n",
        {"files": ["bun.lock"]},
        {"shop": {"runtime": "node", "buildCommand": "bun install"}},
        [],
    ),
    (
        "rails",
        "web: bundle exec puma -C config/puma.rb\nworker: bundle exec sidekiq\nrelease: bin/rails db:migrate\n",
        {},
        {"shop": {"runtime": "ruby", "buildCommand": "bundle install"}, "shop-worker": {"runtime": "ruby"}},
        [],
    ),
    (
        "one runtime per process",
        "web: node server.js\nworker: celery -A tasks worker\n",
        {},
        {"shop": {"runtime": "node"}, "shop-worker": {"runtime": "python"}},
        [],
    ),
    (
        "commands win over the runtime asked for, with a note",
        "web: node server.js\n",
        {"runtime": "python"},
        {"shop": {"runtime": "node"}},
        ["'web' runs 'node server.js', so its runtime is node, not python"],
    ),
    (
        "the files tell when the commands do not",
        "web: ./bin/server\n",
        {"files": ["go.mod", "main.go"]},
        {"shop": {"runtime": "go", "buildCommand": "go build -o app ."}},
        [],
    ),
    (
        "nothing tells: python, said to be a guess",
        "web: ./run.sh\n",
        {},
        {"shop": {"runtime": "python"}},
        ["runtime 'python' is a guess"],
    ),
    (
        "assignments, cd and exec before the program",
        "web: cd api && WEB_CONCURRENCY=2 exec gunicorn app:app\n",
        {},
        {"shop": {"runtime": "python"}},
        [],
    ),
    (
        "a shell wrapper",
        "web: sh -c 'bin/setup && python3.12 -m app'\n",
        {},
        {"shop": {"runtime": "python"}},
        [],
    ),
    (
        "release without web",
        "release: migrate\nworker: node worker.js\n",
        {"name": "Bad Name!"},
        {"bad-name-worker": {"type": "worker", "preDeployCommand": "migrate"}},
        ["'Bad Name!' is not a valid service name", "'release' became the preDeployCommand of 'bad-name-worker'"],
    ),
    (
        "process names that meet as one label",
        "web: node a.js\nworker_1: node b.js\nworker-1: node c.js\n",
        {},
        {"shop": {}, "shop-worker-1": {"startCommand": "node b.js"}, "shop-worker-1-2": {"startCommand": "node c.js"}},
        ["would repeat the name 'shop-worker-1'"],
    ),
]

TYPICAL_FLY = """\
app = "shop-api"
primary_region = "ams"

[build]

[env]
  PORT = "8080"
  LOG_LEVEL = "info"

[http_service]
  internal_port = 8080
  force_https = true
  auto_stop_machines = "stop"
  min_machines_running = 0
  processes = ["app"]

  [[http_service.checks]]
    grace_period = "10s"
    interval = "30s"
    method = "GET"
    path = "/healthz"
    timeout = "5s"

[[vm]]
  memory = "256mb"
  cpu_kind = "shared"
  cpus = 1
"""

FULL_FLY = """\
app = "shop_api"
primary_region = "ams"
kill_signal = "SIGINT"
kill_timeout = "5s"
swap_size_mb = 512

[build]
  dockerfile = "Dockerfile.prod"

[deploy]
  release_command = "python manage.py migrate"

[env]
  DEBUG = false
  WORKERS = 4

[processes]
  app = "gunicorn shop.wsgi"
  worker = "celery -A shop worker"

[http_service]
  internal_port = 8000
  force_https = true
  auto_stop_machines = "stop"
  processes = ["app"]

  [[http_service.checks]]
    path = "/healthz"
    interval = "10s"

[[mounts]]
  source = "shop_data"
  destination = "/data"
  initial_size = "3gb"

[[vm]]
  memory = "1gb"
"""

# (id, fly.toml, {service name: keys it must have}, fragments the notes must hold)
FLY_FILES: list[tuple[str, str, dict[str, dict[str, Any]], list[str]]] = [
    (
        "a typical Fly app: PORT once, health check, memory cap",
        TYPICAL_FLY,
        {
            "shop-api": {
                "type": "web",
                "runtime": "docker",
                "healthCheckPath": "/healthz",
                "memoryLimitMB": 256,
                "envVars": [{"key": "PORT", "value": "8080"}, {"key": "LOG_LEVEL", "value": "info"}],
            }
        },
        ["memoryLimitMB, a slipstream extension", "cpus = 1", "grace_period, interval, timeout"],
    ),
    (
        "process groups, release command, disk, shutdown delay",
        FULL_FLY,
        {
            "shop-api": {
                "type": "web",
                "dockerfilePath": "Dockerfile.prod",
                "dockerCommand": "gunicorn shop.wsgi",
                "preDeployCommand": "python manage.py migrate",
                "healthCheckPath": "/healthz",
                "maxShutdownDelaySeconds": 5,
                "memoryLimitMB": 1024,
                "disk": {"name": "shop_data", "mountPath": "/data", "sizeGB": 3},
                "envVars": [
                    {"key": "DEBUG", "value": "false"},
                    {"key": "WORKERS", "value": "4"},
                    {"key": "PORT", "value": "8000"},
                ],
            },
            "shop-api-worker": {
                "type": "worker",
                "dockerCommand": "celery -A shop worker",
                "memoryLimitMB": 1024,
                "envVars": [{"key": "DEBUG", "value": "false"}, {"key": "WORKERS", "value": "4"}],
            },
        },
        [
            "primary_region",
            "kill_signal = SIGINT",
            "force_https",
            "auto_stop_machines",
            "swap_size_mb",
            "fly secrets",
            "'shop_api' is not a valid service name",
            "release_command runs once per deploy of 'shop-api'",
        ],
    ),
    (
        "a machine preset sets the memory",
        'app = "a"\n[http_service]\ninternal_port = 10000\n[[vm]]\nsize = "shared-cpu-2x"\n',
        {"a": {"memoryLimitMB": 512}},
        [],
    ),
    (
        "memory_mb and a [[vm]] per process group",
        'app = "a"\n[processes]\nweb = "node web.js"\nworker = "node worker.js"\n'
        '[http_service]\ninternal_port = 10000\nprocesses = ["web"]\n'
        '[[vm]]\nmemory_mb = 2048\nprocesses = ["web"]\n[[vm]]\nmemory = "1.5gb"\nprocesses = ["worker"]\n',
        {"a": {"memoryLimitMB": 2048, "dockerCommand": "node web.js"}, "a-worker": {"memoryLimitMB": 1536}},
        [],
    ),
    (
        "[env] PORT differs from internal_port",
        'app = "a"\n[env]\nPORT = "3000"\n[http_service]\ninternal_port = 8080\n',
        {"a": {"envVars": [{"key": "PORT", "value": "3000"}]}},
        ["[env] PORT = 3000 but internal_port = 8080"],
    ),
    (
        "min_machines_running becomes numInstances",
        'app = "a"\n[http_service]\ninternal_port = 10000\nmin_machines_running = 2\n',
        {"a": {"numInstances": 2}},
        ["min_machines_running = 2 became numInstances of 'a'"],
    ),
    (
        "a disk keeps one instance",
        'app = "a"\n[http_service]\ninternal_port = 10000\nmin_machines_running = 3\n'
        '[mounts]\nsource = "data"\ndestination = "/data"\n',
        {"a": {"disk": {"name": "data", "mountPath": "/data"}}},
        ["'a' runs one instance"],
    ),
    (
        "a volume mounted in one process group",
        'app = "a"\n[processes]\nweb = "node web.js"\nworker = "node worker.js"\n'
        '[http_service]\ninternal_port = 10000\nprocesses = ["web"]\n'
        '[[mounts]]\nsource = "q"\ndestination = "queue"\nprocesses = ["worker"]\n',
        {"a-worker": {"disk": {"name": "q", "mountPath": "/queue"}}},
        [],
    ),
    (
        "a top-level http check gives the health path",
        'app = "a"\n[http_service]\ninternal_port = 10000\n[checks.alive]\ntype = "http"\nport = 10000\npath = "/up"\n',
        {"a": {"healthCheckPath": "/up"}},
        ["[checks.alive] only observed the app on Fly"],
    ),
    (
        "old [[services]] with http_checks",
        'app = "a"\n[[services]]\ninternal_port = 5000\nprotocol = "tcp"\n'
        '[[services.ports]]\nport = 443\nhandlers = ["tls", "http"]\n[[services.http_checks]]\npath = "/health"\n',
        {"a": {"type": "web", "healthCheckPath": "/health", "envVars": [{"key": "PORT", "value": "5000"}]}},
        ["[[services]] became web services"],
    ),
    (
        "buildpacks with commands become a native runtime",
        'app = "a"\n[build]\nbuilder = "heroku/builder:22"\n[processes]\napp = "npm start"\nworker = "node w.js"\n'
        "[http_service]\ninternal_port = 10000\n",
        {
            "a": {"runtime": "node", "buildCommand": "npm install", "startCommand": "npm start"},
            "a-worker": {"runtime": "node", "startCommand": "node w.js"},
        },
        [],
    ),
    (
        "buildpacks without commands stay docker",
        'app = "a"\n[build]\nbuilder = "paketobuildpacks/builder:base"\n[http_service]\ninternal_port = 10000\n',
        {"a": {"runtime": "docker"}},
        ["[build] uses buildpacks"],
    ),
    (
        "a prebuilt image",
        'app = "img"\n[build]\nimage = "ghcr.io/x/y:1"\n',
        {"img": {"type": "worker", "runtime": "image", "image": {"url": "ghcr.io/x/y:1"}}},
        [],
    ),
    (
        "a kill_timeout out of range",
        'app = "a"\nkill_timeout = "10m"\n',
        {"a": {"maxShutdownDelaySeconds": 300}},
        ["kill_timeout 10m was clamped to 300 s"],
    ),
    (
        "an env name no process can hold",
        'app = "a"\n[env]\n"A B" = "x"\nOK = "y"\n',
        {"a": {"envVars": [{"key": "OK", "value": "y"}]}},
        ["'A B' is not a usable env var name"],
    ),
]


def _check(imported: Imported, services: dict[str, dict[str, Any]], notes: list[str]) -> None:
    by_name = {s["name"]: s for s in imported.document["services"]}
    assert set(services) <= set(by_name), sorted(by_name)
    for name, wanted in services.items():
        for key, value in wanted.items():
            assert by_name[name].get(key) == value, (name, key, by_name[name].get(key))
    text = "\n".join(imported.notes)
    for fragment in notes:
        assert fragment in text, text
    for svc in imported.document["services"]:
        keys = [e["key"] for e in svc.get("envVars", []) if "key" in e]
        assert len(keys) == len(set(keys)), svc["name"]


@pytest.mark.parametrize(
    ("text", "kwargs", "services", "notes"), [r[1:] for r in PROCFILES], ids=[r[0] for r in PROCFILES]
)
def test_procfile(text: str, kwargs: dict[str, Any], services: dict[str, dict[str, Any]], notes: list[str]) -> None:
    imported = build_from_procfile(text, **{"name": "shop", **kwargs})
    _check(imported, services, notes)


@pytest.mark.parametrize(("text", "services", "notes"), [r[1:] for r in FLY_FILES], ids=[r[0] for r in FLY_FILES])
def test_fly_toml(text: str, services: dict[str, dict[str, Any]], notes: list[str]) -> None:
    _check(build_from_fly_toml(text), services, notes)


OUTPUTS = [(f"procfile: {r[0]}", "Procfile", r[1], r[2]) for r in PROCFILES] + [
    (f"fly: {r[0]}", "fly.toml", r[1], {}) for r in FLY_FILES
]


@pytest.mark.parametrize(("source", "text", "kwargs"), [r[1:] for r in OUTPUTS], ids=[r[0] for r in OUTPUTS])
def test_every_output_validates_as_written(source: str, text: str, kwargs: dict[str, Any]) -> None:
    if source == "Procfile":
        imported = build_from_procfile(text, **{"name": "shop", **kwargs})
    else:
        imported = build_from_fly_toml(text)
    rendered = render_imported(imported, source)
    assert rendered.startswith(f"# render.yaml written by 'slipstream import {source}'.")
    bp = parse_blueprint(rendered)  # raises BlueprintError on any error
    assert [s.name for s in bp.services] == [s["name"] for s in yaml.safe_load(rendered)["services"]]


@pytest.mark.parametrize(
    ("command", "runtime"),
    [
        ("node server.js", "node"),
        ("npx next start -p $PORT", "node"),
        ("pnpm start", "node"),
        ("gunicorn app:app", "python"),
        ("uvicorn main:app --host 0.0.0.0", "python"),
        ("python3.12 -m app", "python"),
        ("./manage.py runserver", "python"),
        ("bundle exec rails server", "ruby"),
        ("bin/rails server", "ruby"),
        ("cargo run --release", "rust"),
        ("mix phx.server", "elixir"),
        ("go run .", "go"),
        ("cd web && exec yarn start", "node"),
        ("java -jar app.jar", None),
        ("./start", None),
        ("unbalanced 'quote", None),
    ],
)
def test_runtime_of_command(command: str, runtime: str | None) -> None:
    assert runtime_of_command(command) == runtime


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "web: ok\nthis is not a procfile line\n",
            "Procfile:2:1: 'this is not a procfile line' is not a Procfile line",
        ),
        ("# nothing\n", "Procfile:1:1: the Procfile declares no processes"),
        ("web: a\nweb: b\n", "Procfile:2:1: process type 'web' appears twice"),
        ("release: migrate\n", "Procfile:1:1: the Procfile declares only a release command"),
    ],
)
def test_procfile_errors(text: str, message: str) -> None:
    with pytest.raises(BlueprintError) as info:
        build_from_procfile(text, name="x")
    assert str(info.value).startswith(message)


def test_bad_toml() -> None:
    with pytest.raises(BlueprintError) as info:
        build_from_fly_toml('app = "x"\n[build\n')
    assert str(info.value).startswith("fly.toml:2:")


def test_notes_cannot_break_out_of_comments() -> None:
    imported = build_from_fly_toml('app = "x"\nodd = "line1\\nservices: []\\u2028more"\n')
    text = render_imported(imported, "fly.toml")
    assert parse_blueprint(text).services[0].name == "x"
    assert all(line.startswith("#") for line in text.split("services:\n")[0].splitlines())
