"""Importers: Procfile and fly.toml become a render.yaml that validates, with notes as comments."""

from __future__ import annotations

import pytest
import yaml

from slipstream.blueprint import BlueprintError, parse_blueprint
from slipstream.blueprint.importers import build_from_fly_toml, build_from_procfile, render_imported

PROCFILE = """\
# comments and blank lines are fine

web: gunicorn app:app --bind 0.0.0.0:$PORT
worker: celery -A app worker
release: alembic upgrade head
clock: python clock.py
"""

FLY = """\
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


def test_procfile() -> None:
    imported = build_from_procfile(PROCFILE, name="shop", runtime="python")
    services = imported.document["services"]
    assert [(s["type"], s["name"]) for s in services] == [
        ("web", "shop"),
        ("worker", "shop-worker"),
        ("worker", "shop-clock"),
    ]
    web = services[0]
    assert web["startCommand"] == "gunicorn app:app --bind 0.0.0.0:$PORT"
    assert web["preDeployCommand"] == "alembic upgrade head"
    assert web["buildCommand"] == "pip install -r requirements.txt"
    assert any("'clock' became a worker" in n for n in imported.notes)
    text = render_imported(imported, "Procfile")
    assert text.startswith("# render.yaml written by 'slipstream import Procfile'.")
    bp = parse_blueprint(text)
    assert [s.name for s in bp.services] == ["shop", "shop-worker", "shop-clock"]


def test_procfile_without_web_and_bad_lines() -> None:
    imported = build_from_procfile("release: migrate\nworker: run\n", name="Bad Name!", runtime="node")
    assert imported.document["services"][0]["name"] == "bad-name-worker"
    assert imported.document["services"][0]["preDeployCommand"] == "migrate"
    assert any("'Bad Name!' is not a valid service name" in n for n in imported.notes)
    with pytest.raises(BlueprintError) as info:
        build_from_procfile("web: ok\nthis is not a procfile line\n", name="x")
    assert str(info.value).startswith("Procfile:2:1: 'this is not a procfile line' is not a Procfile line")
    with pytest.raises(BlueprintError):
        build_from_procfile("# nothing\n", name="x")
    with pytest.raises(BlueprintError):
        build_from_procfile("web: a\nweb: b\n", name="x")


def test_fly_toml() -> None:
    imported = build_from_fly_toml(FLY)
    web, worker = imported.document["services"]
    assert (web["type"], web["name"], worker["type"], worker["name"]) == (
        "web",
        "shop-api",
        "worker",
        "shop-api-worker",
    )
    assert web["runtime"] == "docker" and web["dockerfilePath"] == "Dockerfile.prod"
    assert web["dockerCommand"] == "gunicorn shop.wsgi" and worker["dockerCommand"] == "celery -A shop worker"
    assert web["preDeployCommand"] == "python manage.py migrate" and "preDeployCommand" not in worker
    assert web["healthCheckPath"] == "/healthz"
    assert web["maxShutdownDelaySeconds"] == 5
    assert web["disk"] == {"name": "shop_data", "mountPath": "/data", "sizeGB": 3}
    assert {e["key"]: e["value"] for e in web["envVars"]} == {"DEBUG": "false", "WORKERS": "4", "PORT": "8000"}
    assert {e["key"] for e in worker["envVars"]} == {"DEBUG", "WORKERS"}
    notes = "\n".join(imported.notes)
    for fragment in (
        "primary_region",
        "kill_signal = SIGINT",
        "force_https",
        "auto_stop_machines",
        "vm = [...]",
        "swap_size_mb",
        "fly secrets",
        "'shop_api' is not a valid service name",
    ):
        assert fragment in notes
    text = render_imported(imported, "fly.toml")
    assert yaml.safe_load(text)["services"][0]["name"] == "shop-api"
    bp = parse_blueprint(text)
    assert bp.service("shop-api").disk is not None
    assert any("runtime 'docker' is not supported" in w.message for w in bp.warnings)


def test_fly_image_and_bad_toml() -> None:
    imported = build_from_fly_toml('app = "img"\n[build]\nimage = "ghcr.io/x/y:1"\n')
    (svc,) = imported.document["services"]
    assert (svc["type"], svc["runtime"], svc["image"]) == ("worker", "image", {"url": "ghcr.io/x/y:1"})
    parse_blueprint(render_imported(imported, "fly.toml"))
    with pytest.raises(BlueprintError) as info:
        build_from_fly_toml('app = "x"\n[build\n')
    assert str(info.value).startswith("fly.toml:2:")


def test_notes_cannot_break_out_of_comments() -> None:
    imported = build_from_fly_toml('app = "x"\nodd = "line1\\nservices: []\\u2028more"\n')
    text = render_imported(imported, "fly.toml")
    assert parse_blueprint(text).services[0].name == "x"
    assert all(line.startswith("#") for line in text.split("services:\n")[0].splitlines())
