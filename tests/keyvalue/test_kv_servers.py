"""keyvalue against the real redis-server: auth, isolation, persistence across kill -9, adoption,
live changes, supervision, errors. ``redis-cli`` is the independent client where auth is checked."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from slipstream.errors import Conflict, InvalidInput, NotFound, Unavailable
from slipstream.keyvalue import KeyValueInfo, KeyValueServers
from slipstream.keyvalue.client import Connection, ReplyError, connect
from slipstream.runtime.process import create_time_of

pytestmark = pytest.mark.real


def app(info: KeyValueInfo) -> Connection:
    """A connection as the app's user, with the app's password."""
    return connect(info.host, info.port, "default", info.password)


def cli(port: int, *args: str, password: str | None = None, host: str = "127.0.0.1") -> str:
    """``redis-cli`` (the password in REDISCLI_AUTH, as an app's tooling would pass it)."""
    env = {"PATH": "/usr/bin:/bin", **({"REDISCLI_AUTH": password} if password else {})}
    result = subprocess.run(
        ["redis-cli", "-h", host, "-p", str(port), *args], capture_output=True, text=True, env=env, timeout=10
    )
    return (result.stdout + result.stderr).strip()


def kill_9(servers: KeyValueServers, name: str) -> int:
    """SIGKILL the server and wait until it is dead (a zombie nobody reaps counts as dead)."""
    pid = servers.server(name).pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while create_time_of(pid) is not None:
        assert time.monotonic() < deadline, "the killed server did not die"
        time.sleep(0.01)
    return pid


@contextlib.contextmanager
def squat(port: int) -> Iterator[socket.socket]:
    """Listen on ``port`` (retrying: the kernel refuses a dead server's port for a few ms after it died)."""
    deadline = time.monotonic() + 2
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        while True:
            try:
                sock.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, f"port {port} stayed taken"
                time.sleep(0.01)
        sock.listen()
        yield sock


def wait_for_aof_written(servers: KeyValueServers, name: str) -> None:
    """Until every acknowledged write is in the AOF file: with ``appendfsync everysec`` Redis holds
    writes back (up to 2 s) while a slow fsync runs; measured here, a kill right away lost 2 of 100."""
    deadline = time.monotonic() + 5
    while servers.server(name).info().aof_pending_bytes:
        assert time.monotonic() < deadline, "the AOF buffer did not drain"
        time.sleep(0.01)


def listening_addresses(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_server_answers_only_with_the_password_in_its_own_session(servers: KeyValueServers) -> None:
    info = servers.ensure("cache", password="s3cret/pw")
    assert cli(info.port, "PING") == "NOAUTH Authentication required."
    assert cli(info.port, "PING", password=info.password) == "PONG"
    assert "WRONGPASS" in cli(info.port, "PING", password="guess")
    pid = servers.server("cache").pid()
    assert pid is not None
    assert os.getsid(pid) != os.getsid(0)  # a daemon's Ctrl-C or exit does not reach it
    assert listening_addresses(pid) == {"127.0.0.1"}
    if os.geteuid() == 0:
        assert psutil.Process(pid).username() == "redis"


def test_app_user_may_use_redis_but_not_change_what_slipstream_owns(servers: KeyValueServers) -> None:
    info = servers.ensure("cache", password="app-pw", policy="noeviction", maxmemory_mb=25)
    with app(info) as conn:
        assert conn.call("SET", "k", "v") == "OK" and conn.call("FLUSHALL") == "OK"
        assert conn.call("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", b"noeviction"]
        for command in (("CONFIG", "SET", "maxmemory", "0"), ("CONFIG", "SET", "bind", "0.0.0.0"), ("SHUTDOWN",)):
            with pytest.raises(ReplyError) as denied:
                conn.call(*command)
            assert denied.value.code == "NOPERM"
        with pytest.raises(ReplyError, match="NOPERM"):
            conn.call("ACL", "SETUSER", "default", "nopass")
        with pytest.raises(ReplyError, match="NOPERM"):
            conn.call("REPLICAOF", "203.0.113.9", "6379")
    with servers.server("cache").admin() as admin, pytest.raises(ReplyError, match="protected config"):
        admin.call("CONFIG", "SET", "dir", "/tmp")  # not even slipstream's own user


def test_no_password_in_clear_on_disk_or_in_the_process_list(servers: KeyValueServers) -> None:
    password = "Pl41n-T3xt-Never-Stored"
    servers.ensure("cache", password=password)
    server = servers.server("cache")
    for path in (server.conf, server.state_file):
        assert password not in path.read_text()
        assert path.stat().st_mode & 0o777 == 0o600
    pid = server.pid()
    assert pid is not None
    assert password not in " ".join(psutil.Process(pid).cmdline())


def test_data_survives_kill_9_and_the_server_comes_back_on_its_port(servers: KeyValueServers) -> None:
    info = servers.ensure("queue", password="pw", policy="noeviction")
    with app(info) as conn:
        for i in range(100):
            conn.call("RPUSH", "jobs", f"job-{i}")
        conn.call("SET", "last", "written just before the kill")
    wait_for_aof_written(servers, "queue")
    killed = kill_9(servers, "queue")
    assert not servers.server("queue").running()
    again = servers.ensure("queue", password="pw", policy="noeviction")
    assert again.port == info.port
    assert servers.server("queue").pid() != killed
    with app(again) as conn:
        assert conn.call("LLEN", "jobs") == 100
        assert conn.text("GET", "last") == "written just before the kill"


def test_check_restarts_a_dead_server_and_leaves_healthy_ones_alone(servers: KeyValueServers) -> None:
    info = servers.ensure("cache", password="pw")
    servers.ensure("other", password="pw2")
    with app(info) as conn:
        conn.call("SET", "k", "kept")
    assert servers.check() == []
    wait_for_aof_written(servers, "cache")
    kill_9(servers, "cache")
    events = servers.check()
    assert [(e.name, e.action) for e in events] == [("cache", "restarted")]
    assert str(info.port) in events[0].detail
    with app(info) as conn:
        assert conn.text("GET", "k") == "kept"
    assert servers.check() == []


def test_a_new_manager_adopts_running_servers_without_restarting_them(
    servers: KeyValueServers, new_servers: Callable[..., KeyValueServers]
) -> None:
    info = servers.ensure("cache", password="pw", policy="volatile-lru")
    pid = servers.server("cache").pid()
    assert pid is not None
    started = psutil.Process(pid).create_time()
    restarted_daemon = new_servers(servers.root)
    assert [(e.name, e.action) for e in restarted_daemon.start_all()] == [("cache", "adopted")]
    assert restarted_daemon.ensure("cache", password="pw", policy="volatile-lru") == info
    assert restarted_daemon.server("cache").pid() == pid
    assert psutil.Process(pid).create_time() == started
    assert restarted_daemon.check() == []


def test_adoption_after_a_crash_between_launch_and_record(servers: KeyValueServers) -> None:
    servers.ensure("cache", password="pw")
    server = servers.server("cache")
    pid = server.pid()
    state = server.state_file.read_text().replace(f'"pid": {pid}', '"pid": null')
    server.state_file.write_text(state)  # as if the daemon died before writing the pid down
    assert server.pid() == pid  # found through the pid file and the process title
    assert f'"pid": {pid}' in server.state_file.read_text()


def test_policy_maxmemory_and_password_change_live(servers: KeyValueServers) -> None:
    first = servers.ensure("cache", password="old-pw", policy="allkeys-lru", maxmemory_mb=25)
    pid = servers.server("cache").pid()
    second = servers.ensure("cache", password="new-pw", policy="allkeys-lfu", maxmemory_mb=50)
    assert servers.server("cache").pid() == pid  # no restart
    with app(second) as conn:
        assert conn.call("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", b"allkeys-lfu"]
        assert conn.call("CONFIG", "GET", "maxmemory") == [b"maxmemory", str(50 * 1024 * 1024).encode()]
    with pytest.raises(ReplyError, match="WRONGPASS"):
        app(first)
    status = servers.server("cache").info()
    assert (status.policy, status.maxmemory, status.aof_enabled) == ("allkeys-lfu", 50 * 1024 * 1024, True)
    kill_9(servers, "cache")  # the change is in redis.conf too, so a restart keeps it
    servers.check()
    with app(second) as conn:
        assert conn.call("CONFIG", "GET", "maxmemory-policy") == [b"maxmemory-policy", b"allkeys-lfu"]


def test_ip_allow_list_opens_the_listen_addresses_live(servers: KeyValueServers) -> None:
    extra = "127.0.0.2"  # on lo like every 127/8 address, so the test needs no second interface
    info = servers.ensure("cache", password="pw", ip_allow_list=["10.0.0.0/8"], listen=[extra])
    pid = servers.server("cache").pid()
    assert pid is not None and listening_addresses(pid) == {"127.0.0.1", extra}
    assert cli(info.port, "PING", password="pw", host=extra) == "PONG"
    servers.ensure("cache", password="pw", ip_allow_list=[], listen=[extra])  # back to internal only
    assert servers.server("cache").pid() == pid and listening_addresses(pid) == {"127.0.0.1"}
    assert "Connection refused" in cli(info.port, "PING", password="pw", host=extra)


def test_stop_leaves_no_process_and_keeps_the_server_stopped(servers: KeyValueServers) -> None:
    info = servers.ensure("cache", password="pw")
    with app(info) as conn:
        conn.call("SET", "k", "v")
    server = servers.server("cache")
    pid = server.pid()
    assert pid is not None
    assert servers.stop("cache") is True
    assert create_time_of(pid) is None and not server.pidfile.exists()
    with pytest.raises(Unavailable, match="not reachable"):
        app(info)
    assert servers.check() == [] and not server.running()  # stopped on purpose: not resurrected
    assert servers.stop("cache") is False
    with app(servers.ensure("cache", password="pw")) as conn:  # ensure starts it again, data intact
        assert conn.text("GET", "k") == "v"


def test_stop_all_then_start_all_brings_back_what_was_wanted(servers: KeyValueServers) -> None:
    servers.ensure("a", password="pw")
    servers.ensure("b", password="pw")
    servers.stop("b")
    assert servers.stop_all() == ["a"]
    assert [(e.name, e.action) for e in servers.start_all()] == [("a", "started")]
    assert servers.server("a").running() and not servers.server("b").running()


def test_a_taken_port_is_a_clear_conflict(servers: KeyValueServers) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(Conflict, match=rf"keyvalue cache: port {port} on 127.0.0.1 is in use by pid {os.getpid()}"):
            servers.ensure("cache", password="pw", port=port)
    assert not servers.server("cache").running()
    assert servers.ensure("cache", password="pw", port=port).port == port  # free again: it starts


def test_a_dead_server_whose_port_was_taken_is_reported_then_recovers(servers: KeyValueServers) -> None:
    info = servers.ensure("cache", password="pw")
    kill_9(servers, "cache")
    with squat(info.port):
        events = servers.check()
        assert [(e.name, e.action) for e in events] == [("cache", "failed")], events
        assert f"port {info.port} on 127.0.0.1 is in use" in events[0].detail, events
        assert "apps already have this port in their URL" in events[0].detail
        assert "next try in" in events[0].detail
    time.sleep(0.15)  # the test back-off: 0.05 s doubling
    events = servers.check()
    assert [(e.name, e.action) for e in events] == [("cache", "restarted")], events
    assert servers.server("cache").port == info.port


def test_a_damaged_append_only_file_is_named_in_the_error(servers: KeyValueServers) -> None:
    info = servers.ensure("cache", password="pw")
    with app(info) as conn:
        conn.call("SET", "k", "v")
    servers.stop("cache")
    incr = next((servers.server("cache").data_dir / "appendonlydir").glob("*.incr.aof"))
    incr.write_bytes(b"*3\r\n$3\r\nSET\r\nthis is not RESP\r\n" * 3)
    with pytest.raises(Unavailable, match=r"keyvalue cache did not start: Bad file format reading the append only"):
        servers.ensure("cache", password="pw")


def test_delete_keeps_the_data_aside_or_purges_it(servers: KeyValueServers) -> None:
    servers.ensure("keep", password="pw")
    servers.ensure("drop", password="pw")
    kept = servers.delete("keep")
    assert kept is not None and (kept / "data" / "appendonlydir").is_dir() and kept.parent.name == ".deleted"
    assert servers.delete("drop", purge=True) is None
    assert servers.names() == []
    with pytest.raises(NotFound, match="keyvalue drop does not exist"):
        servers.stop("drop")


def test_bad_settings_are_refused_before_anything_starts(servers: KeyValueServers) -> None:
    with pytest.raises(InvalidInput, match="unknown maxmemoryPolicy"):
        servers.ensure("cache", password="pw", policy="lru")
    with pytest.raises(InvalidInput, match="not a CIDR block"):
        servers.ensure("cache", password="pw", ip_allow_list=["office"])
    with pytest.raises(InvalidInput, match="cannot name a server"):
        servers.ensure("../etc", password="pw")
    with pytest.raises(InvalidInput, match="empty keyvalue password"):
        servers.ensure("cache", password="")
    assert servers.names() == []


def test_start_to_first_ping_is_fast(servers: KeyValueServers, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured: ensure() on a fresh entry returns once slipstream's login got PONG."""
    fresh, adopt = [], []
    for i in range(5):
        began = time.perf_counter()
        info = servers.ensure(f"s{i}", password="pw")
        fresh.append(time.perf_counter() - began)
        began = time.perf_counter()
        servers.ensure(f"s{i}", password="pw")
        adopt.append(time.perf_counter() - began)
        assert cli(info.port, "PING", password="pw") == "PONG"
    with capsys.disabled():
        print(
            f"\nkeyvalue start -> first PING: median {statistics.median(fresh) * 1000:.0f} ms "
            f"(min {min(fresh) * 1000:.0f}, max {max(fresh) * 1000:.0f}); "
            f"ensure on a running server: median {statistics.median(adopt) * 1000:.1f} ms"
        )
    assert statistics.median(fresh) < 2.0


def test_unknown_names_and_unstarted_servers_say_what_to_do(servers: KeyValueServers, kv_base: Path) -> None:
    with pytest.raises(NotFound, match="run 'slipstream apply'"):
        servers.info("nope", "pw")
    assert servers.start_all() == [] and servers.check() == [] and servers.stop_all() == []
    assert KeyValueServers(kv_base / "never-made").names() == []
