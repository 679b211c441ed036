"""Apps as their authors write them for Render, deployed unmodified: a Node app on the `pg` client
with ``ssl: {rejectUnauthorized: false}`` (the way most Node apps written for Render connect) and a
Python app on psycopg with ``sslmode=require``, both on slipstream's managed PostgreSQL over TLS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Daemon, git

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed"),
]

NODE_SERVER = """\
const http = require("http");
const { Pool } = require("pg");

const pool = new Pool({ connectionString: process.env.DATABASE_URL, ssl: { rejectUnauthorized: false } });

async function ready() {
  await pool.query("CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, at timestamptz DEFAULT now())");
}

http.createServer(async (req, res) => {
  try {
    if (req.url === "/health") { res.end("ok"); return; }
    await pool.query("INSERT INTO visits DEFAULT VALUES");
    const ssl = await pool.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    const n = await pool.query("SELECT count(*)::int AS n FROM visits");
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ ssl: ssl.rows[0].ssl, tls: ssl.rows[0].version, visits: n.rows[0].n,
                             jwt: (process.env.JWT_SECRET || "").length }));
  } catch (err) { res.statusCode = 500; res.end(String(err)); }
}).listen(process.env.PORT, async () => { await ready(); console.log("listening on " + process.env.PORT); });
"""

NODE_PACKAGE = {"name": "visits", "version": "1.0.0", "private": True, "dependencies": {"pg": "^8.11.0"}}

PY_APP = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import psycopg

URL = os.environ["DATABASE_URL"]

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok"
        else:
            with psycopg.connect(URL, sslmode="require") as conn:
                ssl, version = conn.execute(
                    "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            body = json.dumps({"ssl": ssl, "tls": version}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

BLUEPRINT = """\
databases:
  - name: visits-db
services:
  - type: web
    name: visits
    runtime: node
    rootDir: node
    buildCommand: npm install --no-audit --no-fund
    startCommand: node server.js
    healthCheckPath: /health
    envVars:
      - key: DATABASE_URL
        fromDatabase: {name: visits-db, property: connectionString}
      - key: JWT_SECRET
        generateValue: true
  - type: web
    name: pyvisits
    runtime: python
    rootDir: py
    buildCommand: pip install -r requirements.txt
    startCommand: python app.py
    healthCheckPath: /health
    envVars:
      - key: DATABASE_URL
        fromDatabase: {name: visits-db, property: connectionString}
"""


def test_node_pg_and_psycopg_apps_run_unmodified_over_tls(open_daemon: Daemon, open_root: Path) -> None:
    d = open_daemon
    repo = open_root / "visits"
    (repo / "node").mkdir(parents=True)
    (repo / "py").mkdir()
    (repo / "node" / "server.js").write_text(NODE_SERVER)
    (repo / "node" / "package.json").write_text(json.dumps(NODE_PACKAGE, indent=2))
    (repo / "py" / "app.py").write_text(PY_APP)
    (repo / "py" / "requirements.txt").write_text("psycopg[binary]>=3.1\n")
    (repo / "render.yaml").write_text(BLUEPRINT)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "visits")
    r = d.cli("apply", str(repo / "render.yaml"), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr

    status, body = d.get("visits.localhost", "/")
    assert status == 200, body
    node = json.loads(body)
    assert node["ssl"] is True and node["tls"].startswith("TLS") and node["visits"] == 1
    assert node["jwt"] == 44  # generateValue: base64 of 256 bits
    status, body = d.get("pyvisits.localhost", "/")
    assert status == 200, body
    assert json.loads(body)["ssl"] is True

    url = d.cli("db", "url", "visits-db")
    assert url.returncode == 0 and "********" in url.stdout
    assert "sslmode=verify-full&sslrootcert=" in url.stderr and "ca.crt" in url.stderr
