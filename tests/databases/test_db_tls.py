"""TLS on the embedded cluster against a real PostgreSQL: psycopg (require, verify-full), the Node
``pg`` client as a Render app configures it, plain connections, file modes, and clusters made by an
older slipstream (no TLS) gaining it at the next start or when a restarted daemon adopts them."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from slipstream.databases import Cluster, DatabaseInfo
from slipstream.databases.commands import build_pg_ctl_argv
from slipstream.databases.server import EmbeddedServer
from slipstream.databases.tls import build_ca, cert_names

pytestmark = pytest.mark.real

STAT_SSL = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
NODE_CLIENT = """
const { Pool } = require("pg");
const fs = require("fs");
// Exactly what a Node app written for Render does with DATABASE_URL ...
const ssl = process.env.CA_FILE
  ? { ca: fs.readFileSync(process.env.CA_FILE, "utf8") }  // ... or verifying against slipstream's CA
  : { rejectUnauthorized: false };
const pool = new Pool({ connectionString: process.env.DATABASE_URL, ssl });
pool
  .query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
  .then((result) => { console.log(JSON.stringify(result.rows[0])); return pool.end(); })
  .catch((err) => { console.error(err.message); process.exit(1); });
"""


def ssl_of(conninfo: str = "", **kwargs: object) -> tuple[bool, str | None]:
    """(ssl, TLS version) of this connection's own backend, as ``pg_stat_ssl`` reports it."""
    with psycopg.connect(conninfo, connect_timeout=5, **kwargs) as conn:  # type: ignore[arg-type]
        row = conn.execute(STAT_SSL).fetchone()
    assert row is not None
    return bool(row[0]), row[1]


def server_of(cluster: Cluster) -> EmbeddedServer:
    assert cluster._server is not None
    return cluster._server


@pytest.fixture(scope="session")
def node_pg() -> Iterator[Path]:
    """A directory with the npm ``pg`` package installed (once per session) and the client script."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("npm and node are not installed: the node-postgres check needs them (apt-get install npm)")
    home = Path(tempfile.mkdtemp(prefix="slipstream-node-pg-"))
    try:
        out = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "pg@8"],
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "npm_config_cache": str(home / ".npm")},
        )
        assert out.returncode == 0, f"npm install pg failed:\n{out.stderr}"
        (home / "client.js").write_text(NODE_CLIENT)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_node(node_pg: Path, url: str, ca_file: Path | None = None) -> dict[str, object]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url}
    if ca_file is not None:
        env["CA_FILE"] = str(ca_file)
    out = subprocess.run(
        ["node", "client.js"], cwd=node_pg, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


# The shared cluster ----------------------------------------------------------------------------
def test_plain_connections_still_work_without_tls(db: DatabaseInfo) -> None:
    assert ssl_of(db.connection_string(), sslmode="disable") == (False, None)


def test_sslmode_require_is_served_over_tls(db: DatabaseInfo) -> None:
    ok, version = ssl_of(db.connection_string(), sslmode="require")
    assert ok and version in ("TLSv1.2", "TLSv1.3")
    assert ssl_of(db.connection_string())[0]  # libpq's default, prefer, now gets TLS too


def test_verify_full_against_the_clusters_ca(cluster: Cluster, db: DatabaseInfo) -> None:
    ca_file = cluster.ca_file
    assert ca_file is not None and ca_file.is_file()
    for host in ("127.0.0.1", "localhost"):
        url = db.connection_string().replace("@127.0.0.1:", f"@{host}:")
        assert ssl_of(url, sslmode="verify-full", sslrootcert=str(ca_file))[0], host
    stranger = Path(tempfile.mkdtemp(prefix="slipstream-ca-")) / "other-ca.crt"
    try:
        stranger.write_bytes(build_ca(dt.datetime.now(dt.UTC)).cert)
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            ssl_of(db.connection_string(), sslmode="verify-full", sslrootcert=str(stranger))
    finally:
        shutil.rmtree(stranger.parent, ignore_errors=True)


def test_node_pg_as_a_render_app_configures_it(node_pg: Path, cluster: Cluster, db: DatabaseInfo) -> None:
    assert run_node(node_pg, db.connection_string())["ssl"] is True  # ssl: {rejectUnauthorized: false}
    assert run_node(node_pg, db.connection_string(), cluster.ca_file)["ssl"] is True  # ssl: {ca}: verified


def test_every_database_property_logs_in(db: DatabaseInfo) -> None:
    props = db.properties()
    by_parts = {
        "host": props["host"],
        "port": props["port"],
        "user": props["user"],
        "password": props["password"],
        "dbname": props["database"],
    }
    with psycopg.connect(**by_parts, connect_timeout=5) as conn:  # type: ignore[arg-type]
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == (props["user"], props["database"])
    assert ssl_of(props["connectionString"], sslmode="require")[0]


def test_tls_files_have_the_right_owners_and_modes(cluster: Cluster) -> None:
    server = server_of(cluster)
    expected = {"ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600}
    for name, mode in expected.items():
        st = (server.tls_dir / name).stat()
        assert stat.S_IMODE(st.st_mode) == mode, name
        owner = server.os_user.uid if name.startswith("server") else os.geteuid()
        assert st.st_uid == owner, name
    assert stat.S_IMODE(server.tls_dir.stat().st_mode) == 0o711
    assert cert_names((server.tls_dir / "server.crt").read_bytes()) == ("localhost", "127.0.0.1", "::1")


def test_an_operators_server_has_no_ca_file(cluster: Cluster) -> None:
    admin = cluster.admin_endpoint()
    url = f"postgresql://{admin.user}:{admin.password}@127.0.0.1:{admin.port}/postgres"
    assert Cluster(Path("/nonexistent/unused"), cluster.store.root, admin_url=url).ca_file is None


# Clusters of their own ---------------------------------------------------------------------------
def make_old_layout(server: EmbeddedServer) -> None:
    """What a slipstream without TLS left behind: no ``tls/``, no ssl lines in ``slipstream.conf``."""
    shutil.rmtree(server.tls_dir)
    conf = server.pgdata / "slipstream.conf"
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("ssl")]
    server.write_owned(conf, "\n".join(lines) + "\n")


def test_a_cluster_without_tls_gains_it_when_adopted_and_at_its_next_start(
    new_cluster: Callable[..., Cluster],
) -> None:
    c = new_cluster("pg-old")
    c.start()
    info = c.ensure_database("old", password="pw-old-cluster")
    server = server_of(c)
    c.stop()
    make_old_layout(server)
    server.run_as_owner(build_pg_ctl_argv(server.bin_dir, "start", server.pgdata, log=server.log), timeout=120)
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        ssl_of(info.connection_string(), sslmode="require")  # what the Node app of issue 10 ran into

    pid = c.pid()
    adopted = Cluster(server.root, c.store.root)  # a restarted daemon: adopts, reloads, never restarts
    adopted.start()
    assert adopted.pid() == pid
    assert ssl_of(info.connection_string(), sslmode="verify-full", sslrootcert=str(adopted.ca_file))[0]

    adopted.stop()
    make_old_layout(server)
    restarted = Cluster(server.root, c.store.root)
    restarted.start()
    assert restarted.ca_file is not None
    assert ssl_of(info.connection_string(), sslmode="verify-full", sslrootcert=str(restarted.ca_file))[0]
    assert ssl_of(info.connection_string(), sslmode="disable") == (False, None)


def test_new_listen_addresses_get_a_new_server_certificate_under_the_same_ca(
    new_cluster: Callable[..., Cluster],
) -> None:
    c = new_cluster("pg-listen")
    c.start()
    server = server_of(c)
    ca_before = server.ca_file.read_bytes()
    key_before = (server.tls_dir / "server.key").read_bytes()
    c.stop()
    wider = Cluster(server.root, c.store.root, listen=["127.0.0.1", "127.0.0.2"])  # loopback, so the test stays local
    wider.start()
    try:
        assert server.ca_file.read_bytes() == ca_before
        assert (server.tls_dir / "server.key").read_bytes() != key_before
        assert "127.0.0.2" in cert_names((server.tls_dir / "server.crt").read_bytes())
        admin = wider.admin_endpoint()
        ok, _ = ssl_of(
            host="127.0.0.2",
            port=admin.port,
            user=admin.user,
            password=admin.password,
            dbname="postgres",
            sslmode="verify-full",
            sslrootcert=str(wider.ca_file),
        )
        assert ok
    finally:
        wider.stop()
    issued = (server.tls_dir / "server.crt").read_bytes()
    again = Cluster(server.root, c.store.root, listen=["127.0.0.1", "127.0.0.2"])
    again.start()  # nothing changed: the certificate is kept
    assert (server.tls_dir / "server.crt").read_bytes() == issued
    again.stop()
