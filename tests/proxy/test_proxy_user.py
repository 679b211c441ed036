"""HAProxy drops to its own unprivileged user after binding (real HAProxy, as root): it still
routes, its admin socket still takes runtime changes (also from a proxy adopting it), and its
access lines still reach the daemon's socket, which only its group may send to."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import psutil
import pytest
from proxy_support import free_port, get

from slipstream.osusers import PROXY_USER, ensure_system_user
from slipstream.proxy import Proxy
from slipstream.proxy.config import render_config
from slipstream.proxy.process import ProxyUser


def test_the_user_lines_come_only_with_a_user(tmp_path: Path) -> None:
    where = {"proxy_dir": tmp_path, "http_port": 8080, "bind_host": "127.0.0.1", "routes": [], "assignment": {}}
    plain = render_config(**where, pool_size=1, slots=2)  # type: ignore[arg-type]
    dropped = render_config(**where, pool_size=1, slots=2, run_as="slipstream-proxy")  # type: ignore[arg-type]
    assert "    user " not in plain
    assert [line for line in dropped.splitlines() if line not in plain.splitlines()][-2:] == [
        "    user slipstream-proxy",
        "    group slipstream-proxy",
    ]


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_haproxy_runs_as_its_own_user(open_tmp: Path, upstream) -> None:  # type: ignore[no-untyped-def]
    entry = ensure_system_user(PROXY_USER, "slipstream proxy")
    user = ProxyUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    run = open_tmp / "run"
    run.mkdir(mode=0o700)
    access = run / "access.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(access))
    os.chmod(access, 0o600)
    receiver.settimeout(5)
    proxy = Proxy(open_tmp / "proxy", free_port(), pool_size=2, access_log=access, run_as=user)
    try:
        proxy.start()
        pid = proxy.pid()
        assert pid is not None and psutil.Process(pid).uids().effective == user.uid
        assert stat.S_IMODE(access.stat().st_mode) == 0o620 and access.stat().st_gid == user.gid
        a = upstream("A")
        proxy.set_route("web", ["web.localhost"])  # runtime changes through the admin socket
        proxy.add_server("web", "d1-1", a.port)
        proxy.set_state("web", "d1-1", "ready")
        assert get(proxy.http_port, "web.localhost")[0] == 200
        assert b"web" in receiver.recv(65536)  # the access line, sent as the proxy's user

        again = Proxy(open_tmp / "proxy", proxy.http_port, pool_size=2, access_log=access, run_as=user)
        again.start()  # adopts it
        assert again.pid() == pid and [s.name for s in again.servers("web")] == ["d1-1"]
    finally:
        proxy.stop(grace=2)
        receiver.close()
