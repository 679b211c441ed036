"""Pure builders: identifiers, argv lists, config text, parsers, retention and drill planning."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slipstream.databases import Backup, DatabaseInfo, derive_identifier
from slipstream.databases.backups import build_backup_id, parse_sidecar, plan_drill, plan_prune, render_sidecar
from slipstream.databases.commands import (
    build_client_env,
    build_hba_lines,
    build_initdb_argv,
    build_pg_ctl_argv,
    build_pg_dump_argv,
    build_pg_restore_argv,
    build_psql_argv,
    find_pg_bin,
    parse_admin_url,
    parse_client_error,
    parse_log_failure,
    parse_postmaster_pid,
    render_pg_hba,
    render_postgresql_conf,
)
from slipstream.databases.models import Endpoint, check_extension, check_identifier, check_kind
from slipstream.errors import InvalidInput, Unavailable
from slipstream.osusers import build_as_user, plan_traversal

BIN = Path("/usr/lib/postgresql/15/bin")
ADMIN = Endpoint("127.0.0.1", 6543, "slipstream", "pw-secret", "app")


@pytest.mark.parametrize(
    ("name", "ident"),
    [
        ("main-db", "main_db"),
        ("Main DB", "main_db"),
        ("9lives", "db_9lives"),
        ("postgres", "postgres_db"),
        ("pg-stats", "db_pg_stats"),
        ("a" * 80, "a" * 63),
        ("orders.v2", "orders_v2"),
    ],
)
def test_derive_identifier(name: str, ident: str) -> None:
    assert derive_identifier(name) == ident
    assert check_identifier(ident, "x") == ident


@pytest.mark.parametrize("bad", ["", "---", "  "])
def test_derive_identifier_rejects_names_without_letters(bad: str) -> None:
    with pytest.raises(InvalidInput):
        derive_identifier(bad)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("Main", "not a valid"),
        ("1abc", "not a valid"),
        ("a-b", "not a valid"),
        ("x" * 64, "not a valid"),
        ("a;drop", "not a valid"),
        ("postgres", "reserved"),
        ("pg_x", "reserved"),
        ("slipstream", "reserved"),
    ],
)
def test_check_identifier_rejects(value: str, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        check_identifier(value, "databaseName")


def test_check_extension_and_kind() -> None:
    assert check_extension("uuid-ossp") == "uuid-ossp"
    assert check_extension("pg_trgm") == "pg_trgm"
    with pytest.raises(InvalidInput):
        check_extension("vector; drop table x")
    assert check_kind("pre_deploy") == "pre_deploy"
    with pytest.raises(InvalidInput, match="unknown backup kind"):
        check_kind("hourly")


def test_database_info_properties_and_url_escaping() -> None:
    info = DatabaseInfo("main", "127.0.0.1", 5433, "main", "main", "p@ss/w:rd")
    assert info.connection_string() == "postgresql://main:p%40ss%2Fw%3Ard@127.0.0.1:5433/main"
    assert info.properties() == {
        "connectionString": info.connection_string(),
        "host": "127.0.0.1",
        "port": "5433",
        "user": "main",
        "password": "p@ss/w:rd",
        "database": "main",
    }
    assert "p@ss" not in repr(info)


def test_find_pg_bin_picks_highest_and_requested(tmp_path: Path) -> None:
    for version in ("9", "13", "15"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "pg_ctl").touch()
    (tmp_path / "16").mkdir()  # no binaries: ignored
    assert find_pg_bin(tmp_path) == tmp_path / "15" / "bin"
    assert find_pg_bin(tmp_path, major=13) == tmp_path / "13" / "bin"
    with pytest.raises(Unavailable, match="PostgreSQL 14"):
        find_pg_bin(tmp_path, major=14)


def test_lifecycle_argv() -> None:
    initdb = build_initdb_argv(BIN, Path("/h/pgdata"), "slipstream", Path("/h/.pw"))
    assert initdb[0] == str(BIN / "initdb")
    assert initdb[initdb.index("--auth") : initdb.index("--auth") + 2] == ["--auth", "scram-sha-256"]
    assert "--data-checksums" in initdb and "--pwfile" in initdb
    start = build_pg_ctl_argv(BIN, "start", Path("/h/pgdata"), log=Path("/h/postgres.log"))
    assert start[:4] == [str(BIN / "pg_ctl"), "start", "--pgdata", "/h/pgdata"]
    assert "--wait" in start and "/h/postgres.log" in start
    stop = build_pg_ctl_argv(BIN, "stop", Path("/h/pgdata"))
    assert stop[stop.index("--mode") + 1] == "fast"
    assert build_pg_ctl_argv(BIN, "status", Path("/d")) == [str(BIN / "pg_ctl"), "status", "--pgdata", "/d"]
    with pytest.raises(ValueError):
        build_pg_ctl_argv(BIN, "restart", Path("/d"))


def test_build_as_user() -> None:
    assert build_as_user(["initdb"], None) == ["initdb"]
    assert build_as_user(["initdb", "-D", "x"], "postgres") == [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
        "initdb",
        "-D",
        "x",
    ]


def test_postgresql_conf_listens_on_loopback_only() -> None:
    conf = render_postgresql_conf(6543, Path("/h/socket"))
    assert "listen_addresses = '127.0.0.1'" in conf.splitlines()
    assert "port = 6543" in conf.splitlines()
    assert "unix_socket_directories = '/h/socket'" in conf.splitlines()
    with pytest.raises(InvalidInput):
        render_postgresql_conf(1, Path("/h/it's"))


def test_pg_hba() -> None:
    text = render_pg_hba()
    rules = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert all(rule[-1] == "scram-sha-256" for rule in rules)  # never trust
    assert {rule[3] for rule in rules if rule[0] == "host"} == {"127.0.0.1/32", "::1/128"}
    lines = build_hba_lines("main", "main", ["203.0.113.7/24", "2001:db8::/32"])
    assert lines == ["host main main 203.0.113.0/24 scram-sha-256", "host main main 2001:db8::/32 scram-sha-256"]
    assert build_hba_lines("main", "main", []) == []
    assert render_pg_hba(lines).endswith("2001:db8::/32 scram-sha-256\n")
    with pytest.raises(InvalidInput, match="not a CIDR"):
        build_hba_lines("main", "main", ["everywhere"])


def test_client_argv_never_holds_the_password() -> None:
    for argv in (
        build_pg_dump_argv(BIN, ADMIN, Path("/b/x.dump"), snapshot="00000003-1"),
        build_pg_restore_argv(BIN, ADMIN, Path("/b/x.dump"), clean=True),
        build_psql_argv(BIN, ADMIN),
    ):
        assert not any("pw-secret" in arg for arg in argv)
        assert argv[argv.index("--dbname") + 1] == "app"
        assert "--no-password" in argv
    dump = build_pg_dump_argv(BIN, ADMIN, Path("/b/x.dump"), snapshot="00000003-1")
    assert dump[dump.index("--format") + 1] == "custom" and dump[dump.index("--snapshot") + 1] == "00000003-1"
    restore = build_pg_restore_argv(BIN, ADMIN, Path("/b/x.dump"), clean=True)
    assert {"--clean", "--if-exists", "--single-transaction"} <= set(restore) and restore[-1] == "/b/x.dump"
    assert "--clean" not in build_pg_restore_argv(BIN, ADMIN, Path("/b/x.dump"), clean=False)
    env = build_client_env(ADMIN)
    assert env["PGPASSWORD"] == "pw-secret" and env["PGPASSFILE"] == "/dev/null"


def test_parse_admin_url() -> None:
    ep = parse_admin_url("postgresql://admin:p%40ss@db.internal:6432/postgres?sslmode=require")
    assert (ep.host, ep.port, ep.user, ep.password, ep.dbname) == ("db.internal", 6432, "admin", "p@ss", "postgres")
    assert build_client_env(ep)["PGSSLMODE"] == "require"
    assert parse_admin_url("postgresql://admin@localhost").port == 5432
    with pytest.raises(InvalidInput, match="no user"):
        parse_admin_url("postgresql://localhost/x")
    with pytest.raises(InvalidInput, match="unsupported parameters: keepalives"):
        parse_admin_url("postgresql://a@h/x?keepalives=1")
    with pytest.raises(InvalidInput, match="bogus"):
        parse_admin_url("postgresql://a@h/x?bogus=1")
    with pytest.raises(InvalidInput, match="not valid"):
        parse_admin_url("postgresql://a@h:notaport/x")


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            "pg_restore: while PROCESSING TOC:\npg_restore: from TOC entry 6; 2615 16390 SCHEMA audit app\n"
            'pg_restore: error: could not execute query: ERROR:  schema "audit" already exists\n'
            "Command was: CREATE SCHEMA audit;\n",
            'ERROR: schema "audit" already exists',
        ),
        (
            "pg_restore: error: could not read from input file: end of file\n",
            "could not read from input file: end of file",
        ),
        ("something odd\nlast words\n", "last words"),
        ("", "no output"),
    ],
)
def test_parse_client_error(stderr: str, reason: str) -> None:
    assert parse_client_error(stderr) == reason


def test_parse_postmaster_pid() -> None:
    text = "4242\n/h/pgdata\n1763900000\n6543\n/h/socket\n127.0.0.1\n  6543001     32768\nready   \n"
    pid = parse_postmaster_pid(text)
    assert (pid.pid, pid.port, pid.socket_dir) == (4242, 6543, "/h/socket")
    assert (pid.listen, pid.status) == ("127.0.0.1", "ready")
    with pytest.raises(ValueError):
        parse_postmaster_pid("4242\n")


def test_parse_log_failure_prefers_fatal() -> None:
    log = (
        "2026-01-01 LOG:  starting PostgreSQL 15\n"
        '2026-01-01 LOG:  could not bind IPv4 address "127.0.0.1": Address already in use\n'
        "2026-01-01 FATAL:  could not create any TCP/IP sockets\n"
        "2026-01-01 LOG:  database system is shut down\n"
    )
    assert parse_log_failure(log) == "FATAL: could not create any TCP/IP sockets"
    assert parse_log_failure("LOG: all fine\n") is None


def test_plan_traversal(tmp_path: Path) -> None:
    top = tmp_path / "top"
    closed = top / "closed"
    open_ = closed / "open"
    open_.mkdir(parents=True)
    os.chmod(top, 0o755)
    os.chmod(closed, 0o700)
    os.chmod(open_, 0o755)
    target = open_ / "postgres" / "pgdata"
    other_uid = os.getuid() + 12345
    assert plan_traversal(target, top, other_uid) == [closed]
    assert plan_traversal(target, top, os.stat(closed).st_uid) == []  # the owner may pass 0700


def _backup(id_: str, kind: str, at: float, status: str = "ok") -> Backup:
    return Backup(id_, "main", Path(f"/b/{id_}.dump"), kind, at, 10, status, None if status == "ok" else "boom")


def test_backup_id_sorts_by_time() -> None:
    when = datetime(2026, 11, 23, 10, 15, 0, tzinfo=UTC).timestamp()
    assert build_backup_id("main", "manual", when) == "main-20261123T101500Z-manual"
    assert build_backup_id("main", "scheduled", 1) < build_backup_id("main", "scheduled", 2_000_000_000)


def test_sidecar_round_trip() -> None:
    backup = Backup(
        "main-1",
        "main",
        Path("/b/main/main-1.dump"),
        "pre_deploy",
        12.5,
        99,
        "ok",
        None,
        "ab" * 32,
        {"public.items": 3},
    )
    data = render_sidecar(backup, tables=["public.items"])
    assert parse_sidecar(data, Path("/b/main")) == backup
    assert parse_sidecar(data, Path("/b/main")).row_counts == {"public.items": 3}


def test_plan_prune_keeps_newest_good_scheduled_and_everything_else() -> None:
    scheduled = [_backup(f"s{i}", "scheduled", float(i)) for i in range(10)]
    failed_old = _backup("f0", "scheduled", 0.5, status="failed")
    failed_new = _backup("f9", "scheduled", 9.5, status="failed")
    others = [_backup("m0", "manual", 0.1), _backup("p0", "pre_deploy", 0.2)]
    doomed = plan_prune([*scheduled, failed_old, failed_new, *others], keep=3)
    assert sorted(b.id for b in doomed) == sorted([f"s{i}" for i in range(7)] + ["f0"])
    assert plan_prune(scheduled[:3], keep=3) == []
    with pytest.raises(InvalidInput):
        plan_prune(scheduled, keep=0)


def test_plan_prune_keeps_pre_deploy_snapshots_by_count_and_a_day() -> None:
    day = 86400.0
    snaps = [_backup(f"p{i}", "pre_deploy", i * day / 4) for i in range(12)]  # every 6 h for 3 days
    manual = _backup("m0", "manual", 0.0)
    now = 12 * day / 4
    doomed = plan_prune([*snaps, manual], keep=1, now=now)
    # past the newest one (p11) and at least a day old: p9 (18 h) and p10 (12 h) stay too
    assert sorted(b.id for b in doomed) == [f"p{i}" for i in range(9)]
    assert plan_prune([*snaps, manual], keep=1) == []  # without a clock, only scheduled ones go


def test_plan_drill() -> None:
    ok = plan_drill(["public.a", "public.b"], {"public.a": 3, "public.b": 0}, {"public.a": 3, "public.b": 0})
    assert ok.ok and ok.tables == {"public.a": (3, 3), "public.b": (0, 0)}
    short = plan_drill(["public.a"], {"public.a": 3}, {"public.a": 2})
    assert not short.ok and "public.a (backup 3, restored 2)" in short.message
    missing = plan_drill(["public.a", "public.b"], {"public.a": 1, "public.b": 1}, {"public.a": 1})
    assert not missing.ok and missing.tables["public.b"] == (1, -1)
    extra = plan_drill(["public.a"], {"public.a": 1}, {"public.a": 1, "public.z": 0})
    assert not extra.ok and extra.tables["public.z"] == (-1, 0)
    presence = plan_drill(["public.a", "public.b"], None, {"public.a": 0})
    assert not presence.ok and presence.tables["public.b"] == (0, -1)
    assert plan_drill(["public.a"], None, {"public.a": 0}).ok


def test_sql_builders_quote_identifiers() -> None:
    from slipstream.databases import sql as q

    assert (
        q.build_create_role('we"ird', "SCRAM-SHA-256$x").as_string()
        == 'CREATE ROLE "we""ird" LOGIN PASSWORD \'SCRAM-SHA-256$x\''
    )
    assert q.build_create_database("main", "main").as_string() == 'CREATE DATABASE "main" OWNER "main"'
    assert (
        q.build_revoke_public_connect("main").as_string() == 'REVOKE CONNECT, TEMPORARY ON DATABASE "main" FROM PUBLIC'
    )
    assert q.build_drop_database("a b").as_string() == 'DROP DATABASE IF EXISTS "a b" WITH (FORCE)'
    assert q.build_create_extension("uuid-ossp").as_string() == 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"'
    assert q.build_count_rows("audit", "events").as_string() == 'SELECT count(*) FROM "audit"."events"'
