"""Other people's blueprints, applied for real: every render.yaml in ../shared/blueprints/public/
that Render accepts is applied on one daemon, each as its own project, with its commands replaced by
a stub app; every web service must then answer through HAProxy, and the project is deleted before
the next one. Databases, env groups, generated values, ``fromService`` and ``sync: false`` all run.

The stub keeps everything that is not a command: names, types, env vars and their sources, groups,
databases, plans, instance counts, health check paths, domains, cron schedules. What it changes: build
and start commands (a tiny HTTP server), ``rootDir`` (dropped: the stub lives at the root), disks'
``mountPath`` (made relative, so no test writes outside its temp dir), and container services
(``runtime: docker``/``image``) become native ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from slipstream.blueprint import BlueprintError, parse_blueprint
from tests.corpus import PUBLIC_BLUEPRINTS
from tests.e2e.conftest import Daemon, git, start_daemon, stop_daemon

CORPUS = PUBLIC_BLUEPRINTS
FILES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not FILES, reason=f"no public blueprints at {CORPUS}")]

STUB = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("stub " + os.environ.get("RENDER_SERVICE_NAME", "?")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def accepted(path: Path) -> bool:
    try:
        parse_blueprint(path.read_text(), filename=path.name)
    except BlueprintError:
        return False  # Render rejects it too (test_corpus explains each one)
    return True


def stub_service(s: dict[str, Any]) -> None:
    """Replace a service's commands by the stub app, keep everything else."""
    kind = s.get("type")
    if kind in ("keyvalue", "redis"):
        return
    for key in (
        "rootDir",
        "dockerfilePath",
        "dockerContext",
        "dockerCommand",
        "image",
        "registryCredential",
        "preDeployCommand",
        "env",
    ):
        s.pop(key, None)
    static = s.get("runtime") == "static"
    s["runtime"] = "static" if static else "python"
    if static:
        publish = str(s.get("staticPublishPath") or "public").strip("./") or "public"
        s["staticPublishPath"] = publish
        s["buildCommand"] = f"mkdir -p {publish} && echo stub > {publish}/index.html"
        return
    s["buildCommand"] = "echo stub build"
    s["preDeployCommand"] = "echo stub pre-deploy"
    if kind == "worker":
        s["startCommand"] = "python -c 'import time; time.sleep(10**6)'"
    elif kind == "cron":
        s["startCommand"] = "echo stub run"
    else:
        s["startCommand"] = "python stub.py"
    if isinstance(s.get("disk"), dict):
        s["disk"]["mountPath"] = "data"


def services_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found = list(doc.get("services") or [])
    for project in doc.get("projects") or []:
        for env in project.get("environments") or []:
            found += env.get("services") or []
    return found


def sync_values(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (s["name"], e["key"])
        for s in services_of(doc)
        for e in s.get("envVars") or []
        if isinstance(e, dict) and e.get("sync") is False and e.get("key")
    ]


@pytest.mark.timeout(1200)
def test_every_public_blueprint_render_accepts_applies(open_root: Path) -> None:
    # no stability or settle wait: this test is about the path from blueprint to serving, not flips
    d = start_daemon(open_root / "slipstream", SLIPSTREAM_MIN_HEALTHY_SECONDS="0", SLIPSTREAM_SETTLE_SECONDS="0")
    try:
        _apply_each(d, open_root)
    finally:
        stop_daemon(d)


def _apply_each(d: Daemon, open_root: Path) -> None:
    applied = []
    for path in FILES:
        if not accepted(path):
            continue
        doc = yaml.safe_load(path.read_text())
        for s in services_of(doc):
            stub_service(s)
        project = path.name.split(".")[0].replace("__", "-")[:60]
        repo = open_root / project
        repo.mkdir()
        (repo / "stub.py").write_text(STUB)
        (repo / "render.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "stub")
        for branch in {str(s["branch"]) for s in services_of(doc) if s.get("branch")} - {"main"}:
            git(repo, "branch", branch)  # the branch the blueprint deploys from
        for service, key in sync_values(doc):  # Render asks for these at the first apply
            r = d.cli("env", "set", service, f"{key}=stub-value-for-{key.lower()}")
            assert r.returncode == 0, r.stdout + r.stderr
        r = d.cli("apply", str(repo / "render.yaml"), "--project", project, timeout=600)
        assert r.returncode == 0, f"{path.name}:\n{r.stdout}\n{r.stderr}"
        status = {s["name"]: s for s in json.loads(d.cli("status", "--json").stdout)["services"]}
        for s in services_of(doc):
            if s.get("type") == "web":
                health = s.get("healthCheckPath") or "/"
                code, body = d.get(f"{s['name']}.localhost", health)
                assert code == 200, f"{path.name}: {s['name']} answered {code}: {body}"
                assert status[s["name"]]["project"] == project
        r = d.cli("project", "delete", project, "--yes", timeout=300)
        assert r.returncode == 0, f"{path.name}:\n{r.stdout}\n{r.stderr}"
        applied.append(path.name)
        shutil.rmtree(repo, ignore_errors=True)
    print(f"applied {len(applied)} of {len(FILES)} public blueprints: {', '.join(applied)}")
    assert len(applied) >= len(FILES) - 1
