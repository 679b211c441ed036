"""Managed PostgreSQL end to end: migrations before traffic, backups that restore, a failed
migration that changes nothing, and a cluster that outlives a killed daemon."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.e2e.conftest import Daemon, Load, git, start_daemon, stop_daemon

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-web"
BLUEPRINT = """\
databases:
  - name: main
    extensions: [pg_trgm]
    ipAllowList:
      - {source: 127.0.0.3/32, description: relay}
services:
  - type: web
    name: notes
    runtime: python
    buildCommand: pip install -r requirements.txt
    preDeployCommand: python migrate.py
    startCommand: python app.py
    healthCheckPath: /health
    maxShutdownDelaySeconds: 5
    envVars:
      - key: DATABASE_URL
        fromDatabase: {name: main, property: connectionString}
"""


@pytest.fixture
def home(open_root: Path) -> Path:
    return open_root


def request(d: Daemon, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Host": "notes.localhost", "Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def notes(d: Daemon) -> list[str]:
    status, body = request(d, "GET", "/notes")
    assert status == 200, body
    return [n["text"] for n in body["notes"]]


def readable_by_nobody(root: Path) -> list[str]:
    """Every file and directory under ``root`` (found as root) that the user nobody may read or
    list (access(2) as nobody: each directory on the way must let it through too)."""
    paths = [root]
    for top, dirs, files in os.walk(root):
        paths += [Path(top) / n for n in dirs + files if not (Path(top) / n).is_symlink()]
    r = subprocess.run(
        ["/bin/sh", "-c", 'while IFS= read -r p; do [ -r "$p" ] && printf "%s\\n" "$p"; done; exit 0'],
        input="".join(f"{p}\n" for p in paths),
        capture_output=True,
        text=True,
        user="nobody",
        check=True,
    )
    return sorted(str(Path(p).relative_to(root)) for p in r.stdout.splitlines())


def test_database_lifecycle(home: Path) -> None:
    repo = home / "app"
    shutil.copytree(EXAMPLE, repo)
    (repo / "render.yaml").write_text(BLUEPRINT)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    d = start_daemon(home / "slipstream", SLIPSTREAM_HEALTH_DEADLINE="60", SLIPSTREAM_SETTLE_SECONDS="1")
    outputs: list[str] = []
    try:
        r = d.cli("deploy", "notes", "--blueprint", str(repo / "render.yaml"), timeout=300)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "applying 001_notes" in r.stdout  # the migration ran before traffic
        for text in ("alpha", "beta", "gamma"):
            assert request(d, "POST", "/notes", {"text": text})[0] == 201
        assert notes(d) == ["alpha", "beta", "gamma"]
        hba = (home / "slipstream" / "postgres" / "pgdata" / "pg_hba.conf").read_text()
        assert "host main main 127.0.0.3/32 scram-sha-256" in hba  # ipAllowList -> pg_hba
        url = d.cli("db", "url", "main", "--show").stdout.strip()
        with psycopg.connect(url) as conn:  # the extension the blueprint asks for was created
            assert conn.execute("SELECT similarity('slipstream', 'slipstreams') > 0.5").fetchone() == (True,)

        # back up, delete, restore: the rows are back
        r = d.cli("db", "backup", "main")
        assert r.returncode == 0, r.stderr
        backup_id = r.stdout.split()[1].rstrip(":")
        password = psycopg.conninfo.conninfo_to_dict(url)["password"]
        assert password and password not in d.cli("db", "url", "main").stdout
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM notes")
        assert notes(d) == []
        r = d.cli("db", "restore", "main", backup_id, "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        assert notes(d) == ["alpha", "beta", "gamma"]
        r = d.cli("db", "drill", "main")
        assert r.returncode == 0 and "drill ok" in r.stdout, r.stdout + r.stderr
        assert backup_id in d.cli("db", "backups", "main").stdout

        # point-in-time recovery: a row written after the base backup, then deleted, comes back
        r = d.cli("db", "base-backup")
        assert r.returncode == 0 and "base backup base-" in r.stdout, r.stdout + r.stderr
        assert request(d, "POST", "/notes", {"text": "delta"})[0] == 201
        time.sleep(0.5)
        moment = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        time.sleep(0.5)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM notes WHERE text = 'delta'")
        r = d.cli("db", "restore", "main", "--to-time", moment, "--into", "main_then", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        then = psycopg.conninfo.make_conninfo(url, dbname="main_then")
        with psycopg.connect(then) as conn:
            assert [t for (t,) in conn.execute("SELECT text FROM notes ORDER BY id")] == [
                "alpha",
                "beta",
                "gamma",
                "delta",
            ]
        assert notes(d) == ["alpha", "beta", "gamma"]  # the live database is untouched
        assert "point-in-time recovery: any time from" in d.cli("db", "backups", "main").stdout
        r = d.cli("db", "restore", "main", "--to-time", "2001-01-01T00:00:00Z", "--into", "main_old")
        assert r.returncode == 1 and "no base backup finished before 2001" in r.stderr, r.stderr

        # a migration that fails halfway: deploy fails, live release answers, schema unchanged
        applied = sorted(p.stem for p in (repo / "migrations").glob("*.sql"))
        (repo / "migrations" / "999_broken.sql").write_text(
            "ALTER TABLE notes ADD COLUMN extra TEXT;\nSELECT no_such_function();\n"
        )
        (repo / "VERSION").write_text("2.0.0\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "v2 with a broken migration")
        with Load(d.http_port, "notes.localhost", threads=2) as load:
            r = d.cli("deploy", "notes", "--blueprint", str(repo / "render.yaml"), timeout=300)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "pre_deploy_failed" in r.stderr and "slipstream db restore main" in r.stderr
        assert load.failures == [] and load.ok > 50
        assert all('"version": "1.0.0"' in v for v in load.versions)
        with psycopg.connect(url) as conn:
            cols = [
                r[0]
                for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name='notes'")
            ]
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert "extra" not in cols and sorted(versions) == applied
        assert notes(d) == ["alpha", "beta", "gamma"]

        # an extension this machine does not have: a one-line error naming it, nothing changes
        (repo / "render-ext.yaml").write_text(BLUEPRINT.replace("[pg_trgm]", "[pg_trgm, surely_not_here]"))
        live = json.loads(d.cli("status", "--json").stdout)["services"][0]["live_deploy"]["id"]
        r = d.cli("deploy", "notes", "--blueprint", str(repo / "render-ext.yaml"), timeout=120)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "extension 'surely_not_here' is not installed" in r.stderr and "Traceback" not in r.stderr
        assert json.loads(d.cli("status", "--json").stdout)["services"][0]["live_deploy"]["id"] == live
        assert notes(d) == ["alpha", "beta", "gamma"]

        # kill -9 the daemon: PostgreSQL and the app keep serving; a new daemon adopts the cluster
        pg_pid = int((home / "slipstream" / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
        daemon_pid = int((home / "slipstream" / "run" / "daemon.pid").read_text())
        os.kill(daemon_pid, signal.SIGKILL)
        time.sleep(0.5)
        assert notes(d) == ["alpha", "beta", "gamma"]
        assert psutil.pid_exists(pg_pid)
        r = d.cli("up", "--detach")
        assert r.returncode == 0, r.stderr
        assert int((home / "slipstream" / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0]) == pg_pid
        assert "main" in d.cli("db", "list").stdout
        assert notes(d) == ["alpha", "beta", "gamma"]

        # no connection string or password unmasked in CLI output, API answers or logs
        outputs += [
            d.cli(*args).stdout
            for args in (
                ["status", "--json"],
                ["deploys", "notes", "--json"],
                ["logs", "notes", "-n", "1000"],
                ["db", "list"],
            )
        ]
        text = "\n".join(outputs)
        assert password not in text and url not in text
        for f in (home / "slipstream").glob("state.db*"):
            assert password.encode() not in f.read_bytes()

        # the user nobody can read nothing in the state directory (the CA's and server's public
        # certificates aside: clients need them to verify the server)
        assert readable_by_nobody(home / "slipstream") == ["postgres/tls/ca.crt", "postgres/tls/server.crt"]
    finally:
        stop_daemon(d)
    assert not psutil.pid_exists(pg_pid) or psutil.Process(pg_pid).status() == psutil.STATUS_ZOMBIE
