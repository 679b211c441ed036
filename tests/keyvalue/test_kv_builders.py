"""Pure parts of keyvalue: names and policies, redis.conf, bind addresses, RESP, INFO and log parsers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from slipstream.errors import InvalidInput
from slipstream.keyvalue.commands import (
    build_server_argv,
    hash_password,
    parse_config_error,
    parse_info,
    parse_log,
    parse_log_failure,
    plan_bind,
    plan_config_changes,
    render_redis_conf,
    summarize_info,
)
from slipstream.keyvalue.models import (
    KeyValueInfo,
    ServerSpec,
    check_maxmemory,
    check_name,
    check_policy,
    plan_maxmemory_mb,
)
from slipstream.keyvalue.resp import ErrorReply, Incomplete, build_command, parse_reply

APP = hashlib.sha256(b"app-pw").hexdigest()
ADMIN = hashlib.sha256(b"admin-pw").hexdigest()


# Names, policies, plans ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cache", "Cache-1", "jobs.v2", "a_b", "9lives", "x" * 63])
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-x", "a/b", "a b", "x" * 64, "naïve", "a\n"])
def test_check_name_rejects(name: str) -> None:
    with pytest.raises(InvalidInput, match="cannot name a server"):
        check_name(name)


def test_check_policy_and_maxmemory() -> None:
    assert check_policy("volatile-ttl") == "volatile-ttl"
    with pytest.raises(InvalidInput, match=r"unknown maxmemoryPolicy 'allkeys_lru' \(use one of allkeys-lru"):
        check_policy("allkeys_lru")
    assert check_maxmemory(None) is None and check_maxmemory(25) == 25
    for bad in (0, -5, True):
        with pytest.raises(InvalidInput, match="not a positive size"):
            check_maxmemory(bad)


@pytest.mark.parametrize(
    ("plan", "mb"), [("free", 25), ("starter", 256), (None, 256), ("Standard", 1024), ("pro plus", 10240)]
)
def test_plan_maxmemory_mb(plan: str | None, mb: int) -> None:
    assert plan_maxmemory_mb(plan) == mb


def test_plan_maxmemory_mb_rejects_unknown_plans() -> None:
    with pytest.raises(InvalidInput, match="unknown Key Value plan 'huge'"):
        plan_maxmemory_mb("huge")


def test_keyvalue_info_properties_match_render_fromservice() -> None:
    info = KeyValueInfo("cache", "127.0.0.1", 6380, "p@ss/w:rd")
    assert info.properties() == {
        "connectionString": "redis://default:p%40ss%2Fw%3Ard@127.0.0.1:6380",
        "host": "127.0.0.1",
        "port": "6380",
        "hostport": "127.0.0.1:6380",
    }
    assert KeyValueInfo("c", "::1", 6380, "x").hostport() == "[::1]:6380"
    assert "p@ss" not in repr(info)


# redis.conf and argv -------------------------------------------------------------------------
def test_render_redis_conf() -> None:
    conf = render_redis_conf(
        port=6380,
        spec=ServerSpec("noeviction", 25, ("127.0.0.1", "10.0.0.5")),
        data_dir=Path("/h/kv/cache/data"),
        pidfile=Path("/h/kv/cache/data/redis.pid"),
        logfile=Path("/h/kv/cache/redis.log"),
        app_password_sha256=APP,
        admin_password_sha256=ADMIN,
    )
    lines = [line for line in conf.splitlines() if not line.startswith("#")]
    assert lines == [
        "port 6380",
        "bind 127.0.0.1 10.0.0.5",
        "protected-mode yes",
        "daemonize yes",
        'pidfile "/h/kv/cache/data/redis.pid"',
        'logfile "/h/kv/cache/redis.log"',
        "loglevel notice",
        "set-proc-title yes",
        'proc-title-template "{title} {listen-addr} {config-file}"',
        'dir "/h/kv/cache/data"',
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "maxmemory 25mb",
        "maxmemory-policy noeviction",
        "enable-debug-command no",
        "enable-module-command no",
        "enable-protected-configs no",
        f"user default reset on #{APP} ~* &* +@all -config|set -config|rewrite -acl|setuser -acl|deluser"
        " -acl|load -acl|save -shutdown -replicaof -slaveof -failover",
        f"user slipstream reset on #{ADMIN} ~* &* +@all",
    ]
    assert "app-pw" not in conf and "admin-pw" not in conf


def test_render_redis_conf_without_maxmemory_and_refusals() -> None:
    kwargs = dict(
        port=6380,
        data_dir=Path("/d"),
        pidfile=Path("/d/p"),
        logfile=Path("/l"),
        app_password_sha256=APP,
        admin_password_sha256=ADMIN,
    )
    assert "maxmemory 0\n" in render_redis_conf(spec=ServerSpec(), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown maxmemoryPolicy"):
        render_redis_conf(spec=ServerSpec(policy="lru"), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cannot be written into redis.conf"):
        render_redis_conf(spec=ServerSpec(), **{**kwargs, "data_dir": Path('/d/"x')})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SHA-256"):
        render_redis_conf(spec=ServerSpec(), **{**kwargs, "app_password_sha256": "app-pw"})  # type: ignore[arg-type]


def test_hash_password_and_server_argv() -> None:
    assert hash_password("app-pw") == APP
    with pytest.raises(InvalidInput, match="empty keyvalue password"):
        hash_password("")
    conf = Path("/h/kv/cache/redis.conf")
    assert build_server_argv(Path("/usr/bin/redis-server"), conf, None) == ["/usr/bin/redis-server", str(conf)]
    assert build_server_argv(Path("/usr/bin/redis-server"), conf, "redis") == [
        "setpriv",
        "--reuid=redis",
        "--regid=redis",
        "--init-groups",
        "--",
        "/usr/bin/redis-server",
        str(conf),
    ]


@pytest.mark.parametrize(
    ("allow", "listen", "bind"),
    [
        ([], [], ("127.0.0.1",)),
        ([], ["10.0.0.5"], ("127.0.0.1",)),  # ipAllowList: [] is internal only, whatever the operator opens
        (["10.0.0.0/8"], [], ("127.0.0.1",)),  # nothing to open (the manager logs a warning)
        (["10.0.0.0/8"], ["10.0.0.5", "10.0.0.5", "127.0.0.1"], ("127.0.0.1", "10.0.0.5")),
        (["0.0.0.0/0"], ["*"], ("0.0.0.0",)),
        (["0.0.0.0/0"], ["0.0.0.0", "10.0.0.5", "fd00::1"], ("0.0.0.0", "fd00::1")),
        (["::/0"], ["::", "::1"], ("127.0.0.1", "::")),
        (["203.0.113.7"], [" 10.0.0.5 "], ("127.0.0.1", "10.0.0.5")),  # a bare address is a /32
    ],
)
def test_plan_bind(allow: list[str], listen: list[str], bind: tuple[str, ...]) -> None:
    assert plan_bind(allow, listen) == bind


@pytest.mark.parametrize(
    ("allow", "listen", "message"),
    [
        (["10.0.0.0/33"], [], "ipAllowList source '10.0.0.0/33' is not a CIDR block"),
        (["office"], ["10.0.0.5"], "ipAllowList source 'office' is not a CIDR block"),
        (["10.0.0.0/8"], ["eth0"], "keyvalue listen address 'eth0' is not an IP address"),
    ],
)
def test_plan_bind_rejects(allow: list[str], listen: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan_bind(allow, listen)


def test_plan_config_changes() -> None:
    live = {"maxmemory": "26214400", "maxmemory-policy": "allkeys-lru", "bind": "127.0.0.1"}
    assert plan_config_changes(live, ServerSpec("allkeys-lru", 25, ("127.0.0.1",))) == []
    assert plan_config_changes(live, ServerSpec("noeviction", None, ("127.0.0.1", "10.0.0.5"))) == [
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("bind", "127.0.0.1 10.0.0.5"),
    ]


# RESP ----------------------------------------------------------------------------------------
def test_build_command() -> None:
    assert build_command("AUTH", "default", "p w\r\n") == b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$5\r\np w\r\n\r\n"
    assert build_command("SET", b"\x00k", 12) == b"*3\r\n$3\r\nSET\r\n$2\r\n\x00k\r\n$2\r\n12\r\n"
    with pytest.raises(ValueError):
        build_command()


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b"+PONG\r\n", "PONG"),
        (b"-NOAUTH Authentication required.\r\n", ErrorReply("NOAUTH Authentication required.")),
        (b":42\r\n", 42),
        (b"$5\r\nhe\r\no\r\n", b"he\r\no"),
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n", [b"maxmemory", b"0"]),
        (b"*2\r\n*1\r\n:1\r\n+OK\r\n", [[1], "OK"]),
    ],
)
def test_parse_reply(wire: bytes, reply: object) -> None:
    assert parse_reply(wire + b"+next\r\n") == (reply, len(wire))


@pytest.mark.parametrize("cut", [b"", b"+PON", b"$5\r\nhel", b"*2\r\n:1\r\n", b"$5\r\nhello\r"])
def test_parse_reply_needs_more(cut: bytes) -> None:
    with pytest.raises(Incomplete):
        parse_reply(cut)


def test_parse_reply_rejects_garbage_and_names_error_codes() -> None:
    with pytest.raises(ValueError, match="not a RESP reply"):
        parse_reply(b"HTTP/1.1 400\r\n")
    assert ErrorReply("WRONGPASS invalid username-password pair").code == "WRONGPASS"


# INFO, logs, config errors --------------------------------------------------------------------
INFO = """# Server\r
redis_version:7.0.15\r
process_id:4242\r
tcp_port:6380\r
uptime_in_seconds:12\r
config_file:/h/kv/cache/redis.conf\r
\r
# Clients\r
connected_clients:3\r
# Memory\r
used_memory:1024000\r
maxmemory:26214400\r
maxmemory_policy:noeviction\r
# Persistence\r
loading:0\r
aof_enabled:1\r
aof_last_write_status:ok\r
aof_buffer_length:512\r
"""


def test_parse_and_summarize_info() -> None:
    info = parse_info(INFO)
    assert info["config_file"] == "/h/kv/cache/redis.conf" and "# Server" not in info
    status = summarize_info(info)
    assert (status.version, status.pid, status.port, status.uptime_s) == ("7.0.15", 4242, 6380, 12)
    assert (status.used_memory, status.maxmemory, status.policy) == (1024000, 26214400, "noeviction")
    assert (status.aof_enabled, status.aof_last_write_ok, status.aof_pending_bytes) == (True, True, 512)
    assert (status.connected_clients, status.loading) == (3, False)
    with pytest.raises(ValueError, match="INFO has no 'tcp_port' field"):
        summarize_info({k: v for k, v in info.items() if k != "tcp_port"})


BIND_FAILED = """\
25178:C 02 Dec 2026 12:41:12.353 # Configuration loaded
25178:M 02 Dec 2026 12:41:12.354 * monotonic clock: POSIX clock_gettime
25178:M 02 Dec 2026 12:41:12.354 # Warning: Could not create server TCP listening socket 127.0.0.1:6399: bind: Address already in use
25178:M 02 Dec 2026 12:41:12.354 # Failed listening on port 6399 (TCP), aborting.
"""
BAD_AOF = """\
7:M 02 Dec 2026 12:41:06.509 # WARNING Memory overcommit must be enabled! Without it, a background save may fail.
7:M 02 Dec 2026 12:41:06.552 # Bad file format reading the append only file appendonly.aof.1.incr.aof: make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>
"""
STARTED = """\
                _._
24790:M 02 Dec 2026 12:41:06.509 # WARNING Memory overcommit must be enabled! Without it, failures are possible.
24790:M 02 Dec 2026 12:41:06.552 * Ready to accept connections
"""


@pytest.mark.parametrize(
    ("log", "failure"),
    [
        (BIND_FAILED, "Could not create server TCP listening socket 127.0.0.1:6399: bind: Address already in use"),
        (BAD_AOF, "Bad file format reading the append only file appendonly.aof.1.incr.aof: make a backup"),
        (STARTED, None),
        ("", None),
    ],
)
def test_parse_log_failure(log: str, failure: str | None) -> None:
    found = parse_log_failure(log)
    assert found == failure if failure is None else found is not None and found.startswith(failure)


def test_parse_log_skips_the_logo_and_keeps_pid_and_level() -> None:
    lines = parse_log(STARTED)
    assert [(line.pid, line.level) for line in lines] == [(24790, "#"), (24790, "*")]
    assert lines[-1].message == "Ready to accept connections"


@pytest.mark.parametrize(
    ("stderr", "gist"),
    [
        (
            "\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\nReading the configuration file, at line 2\n"
            ">>> 'bogus-directive yes'\nBad directive or wrong number of arguments\n",
            "line 2: 'bogus-directive yes': Bad directive or wrong number of arguments",
        ),
        ("something else went wrong\n", "something else went wrong"),
        ("", "no output"),
    ],
)
def test_parse_config_error(stderr: str, gist: str) -> None:
    assert parse_config_error(stderr) == gist
