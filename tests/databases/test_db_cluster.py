"""The cluster against a real PostgreSQL: lifecycle, adoption, databases and roles, extensions."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import pytest

from slipstream.databases import Cluster, DatabaseInfo
from slipstream.errors import Conflict, InvalidInput, Unavailable


def _login(info: DatabaseInfo) -> str:
    with psycopg.connect(info.connection_string(), connect_timeout=5) as conn:
        row = conn.execute("SELECT current_user || '@' || current_database()").fetchone()
        assert row is not None
        return str(row[0])


def _postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def test_started_cluster_listens_on_loopback_in_its_own_session(cluster: Cluster) -> None:
    assert cluster.running()
    assert cluster.server_major_version() >= 13
    postmaster = cluster._server.postmaster()  # type: ignore[union-attr]
    assert postmaster is not None and postmaster.port == cluster.port
    assert postmaster.listen == "127.0.0.1"
    assert os.getsid(postmaster.pid) != os.getsid(0)  # a daemon's Ctrl-C or exit does not reach it
    if os.geteuid() == 0:
        assert psutil.Process(postmaster.pid).uids().real != 0


def test_second_cluster_object_adopts_the_running_server(cluster: Cluster) -> None:
    pid = cluster.pid()
    started = psutil.Process(pid).create_time()  # type: ignore[arg-type]
    server = cluster._server
    assert server is not None
    again = Cluster(server.root, cluster.store.root)
    again.start()
    assert again.running() and again.pid() == pid and again.port == cluster.port
    assert psutil.Process(pid).create_time() == started  # adopted, not restarted  # type: ignore[arg-type]


def test_ensure_database_is_idempotent_and_the_role_can_log_in(cluster: Cluster) -> None:
    name = f"t{secrets.token_hex(3)}-main"
    first = cluster.ensure_database(name, password="first-pass")
    try:
        assert (first.host, first.port) == ("127.0.0.1", cluster.port)
        assert first.database == first.user == name.replace("-", "_")
        assert _login(first) == f"{first.user}@{first.database}"
        again = cluster.ensure_database(name, password="second-pass")  # rotate
        assert (again.database, again.user) == (first.database, first.user)
        assert _login(again) == f"{first.user}@{first.database}"
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _login(first)
        with psycopg.connect(again.connection_string()) as conn:  # the owner can create tables
            conn.execute("CREATE TABLE t (id int)")
    finally:
        cluster.drop_database(first)
    with pytest.raises(psycopg.OperationalError):
        _login(first)


def test_passwords_reach_the_server_only_as_scram_verifiers(cluster: Cluster) -> None:
    from slipstream.databases import admin
    from slipstream.databases.sql import encrypt_password

    with admin.connect(cluster.admin_endpoint()) as conn:
        verifier = encrypt_password(conn, "plain-secret", "someone")
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "plain-secret" not in verifier


def test_explicit_names_and_isolation_between_databases(cluster: Cluster, db: DatabaseInfo) -> None:
    suffix = secrets.token_hex(3)
    other = cluster.ensure_database(
        f"o{suffix}", database_name=f"shop_{suffix}", user=f"shop_user_{suffix}", password="pw-other"
    )
    try:
        assert (other.database, other.user) == (f"shop_{suffix}", f"shop_user_{suffix}")
        intruder = DatabaseInfo(db.name, db.host, db.port, other.database, db.user, db.password)
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            _login(intruder)
        with pytest.raises(Conflict, match="belongs to role"):
            cluster.ensure_database("x", database_name=other.database, user=db.user, password="pw")
        with pytest.raises(InvalidInput):
            cluster.ensure_database("x", database_name="Robert'); DROP", password="pw")
        twin = other.name.replace("o", "O", 1)  # a different blueprint name, the same identifier
        with pytest.raises(Conflict, match=f"already belongs to blueprint database '{other.name}'"):
            cluster.ensure_database(twin, database_name=other.database, user=other.user, password="pw2")
        assert _login(other)  # the password was not changed by the refused call
    finally:
        cluster.drop_database(other)


def test_extensions(cluster: Cluster, db: DatabaseInfo) -> None:
    cluster.ensure_extensions(db, ["citext", "pg_trgm"])
    cluster.ensure_extensions(db, ["citext"])  # idempotent
    with psycopg.connect(db.connection_string()) as conn:
        row = conn.execute("SELECT 'ABC'::citext = 'abc'::citext").fetchone()
        assert row == (True,)
    with pytest.raises(InvalidInput, match="'surely_not_installed' is not installed") as caught:
        cluster.ensure_extensions(db, ["surely_not_installed"])
    assert caught.value.hint and "remove it from the blueprint" in caught.value.hint


def test_admin_url_mode_uses_an_existing_server(cluster: Cluster) -> None:
    admin = cluster.admin_endpoint()
    url = f"postgresql://{admin.user}:{admin.password}@127.0.0.1:{admin.port}/postgres"
    external = Cluster(Path("/nonexistent/unused"), cluster.store.root, admin_url=url)
    external.start()  # checks the server answers; starts nothing
    assert external.running() and external.pid() is None and external.port == cluster.port
    info = external.ensure_database(f"x{secrets.token_hex(3)}", password="pw-ext")
    try:
        assert _login(info) == f"{info.user}@{info.database}"
    finally:
        external.drop_database(info)
    external.stop()  # a no-op
    assert cluster.running()
    down = Cluster(Path("/nonexistent"), cluster.store.root, admin_url=url.replace(str(admin.port), "1"))
    assert not down.running()
    with pytest.raises(Unavailable, match="cannot connect"):
        down.ensure_database("x", password="pw")


def test_psql_argv_logs_in_without_the_password_in_argv(cluster: Cluster, db: DatabaseInfo) -> None:
    import subprocess

    argv = cluster.psql_argv(db)
    assert db.password not in " ".join(argv)
    out = subprocess.run(
        [*argv, "-Atc", "select current_user"], env=cluster.psql_env(db), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == db.user


def test_restart_reuses_the_port_and_stop_leaves_no_process(new_cluster: Callable[..., Cluster]) -> None:
    c = new_cluster("pg-life")
    try:
        c.start()
        port, pid = c.port, c.pid()
        assert pid is not None and psutil.pid_exists(pid)
        c.stop()
        assert not c.running() and c.pid() is None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert _postgres_processes(c._server.pgdata) == []  # type: ignore[union-attr]
        c.stop()  # a no-op when stopped
        restarted = Cluster(c._server.root, c.store.root)  # type: ignore[union-attr]
        restarted.start()
        assert restarted.port == port and restarted.pid() not in (None, pid)
    finally:
        c.stop()
    assert _postgres_processes(c._server.pgdata) == []  # type: ignore[union-attr]


def test_start_on_a_taken_port_fails_clearly(new_cluster: Callable[..., Cluster]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        c = new_cluster("pg-taken", port=squatter.getsockname()[1])
        with pytest.raises(Unavailable, match="did not start") as caught:
            c.start()
        assert caught.value.hint and "postgres.log" in caught.value.hint
        assert not c.running()
