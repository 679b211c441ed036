from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slipstream.logs.access import (
    ACCESS_LOG_FORMAT,
    AccessRecord,
    access_line,
    deploy_of,
    parse_access,
    render_access_log_config,
)
from slipstream.logs.model import Level, LogLine, Stream
from slipstream.logs.receiver import AccessReceiver, deepen_datagram_queue

LINE = 'slipstream-access v=1 t=1796217808.111 svc=web be=be_01 srv=s01 sp=41001 st=200 b=571 tw=0 tc=0 tr=1 ta=2 tt=2 fl=---- ci=127.0.0.1 m=GET p="/" q=""'


def rec(**kw: object) -> AccessRecord:
    base = dict(
        ts=1796217808.111,
        service="web",
        backend="be_01",
        server="s01",
        server_port=41001,
        status=200,
        bytes=571,
        tw=0,
        tc=0,
        tr=1,
        ta=2,
        tt=2,
        flags="----",
        client="127.0.0.1",
        method="GET",
        path="/",
        query="",
    )
    return AccessRecord(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line, record",
    [
        (LINE, rec()),
        (LINE + "\n", rec()),
        (
            LINE.replace('p="/" q=""', 'p="/foo%20bar/x#22y" q="?a=1&b=%22q"'),
            rec(path='/foo%20bar/x"y', query="?a=1&b=%22q"),
        ),
        (
            LINE.replace("st=200", "st=503").replace("tc=0 tr=1", "tc=-1 tr=-1").replace("fl=----", "fl=SC--"),
            rec(status=503, tc=None, tr=None, flags="SC--"),
        ),
        (
            LINE.replace("svc=web be=be_01 srv=s01 sp=41001", "svc=- be=no_route srv=<NOSRV> sp=-"),
            rec(service=None, backend="no_route", server=None, server_port=None),
        ),
        (LINE.replace("m=GET", "m=<BADREQ>").replace('p="/"', 'p=""'), rec(method="<BADREQ>", path="")),
        (LINE.replace("v=1", "v=2"), None),
        ("Connect from 127.0.0.1:5000 to 127.0.0.1:8080 (http/HTTP)", None),
        (LINE.replace("t=1796217808.111", "t=x"), None),
    ],
)
def test_parse_access(line: str, record: AccessRecord | None) -> None:
    assert parse_access(line) == record


@pytest.mark.parametrize(
    "status, level", [(200, Level.INFO), (302, Level.INFO), (404, Level.WARN), (502, Level.ERROR), (None, Level.ERROR)]
)
def test_level_follows_status(status: int | None, level: Level) -> None:
    assert rec(status=status).level == level


def test_access_line() -> None:
    line = access_line(rec(path="/api", query="?x=1"), "web-d12-1")
    assert (line.service, line.stream, line.deploy_id, line.instance, line.level) == (
        "web",
        Stream.ACCESS,
        12,
        "web-d12-1",
        Level.INFO,
    )
    assert line.message == "GET /api?x=1 200 571B 2ms"
    assert line.fields is not None and line.fields["tr"] == 1 and line.fields["server_port"] == 41001
    assert deploy_of("my-app-d3-2") == 3 and deploy_of(None) is None and deploy_of("web-predeploy") is None


def test_render_access_log_config(tmp_path: Path) -> None:
    cfg = render_access_log_config(tmp_path / "access.sock")
    assert cfg == {
        "global": [f"    log {tmp_path / 'access.sock'} len 8192 format raw local0 info"],
        "frontend http": ["    log global", f'    log-format "{ACCESS_LOG_FORMAT}"'],
    }


def test_receiver_turns_datagrams_into_lines(tmp_path: Path) -> None:
    got: list[LogLine] = []
    path = tmp_path / "run" / "access.sock"
    r = AccessReceiver(path, got.extend, resolve=lambda be, srv, port: "web-d7-1" if port == 41001 else None)
    r.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto((LINE + "\n").encode(), str(path))
            s.sendto(b"garbage", str(path))
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        r.stop()
    assert [(x.stream, x.instance, x.deploy_id, x.message) for x in got] == [
        (Stream.ACCESS, "web-d7-1", 7, "GET / 200 571B 2ms"),
        (Stream.EVENT, None, None, "haproxy: garbage"),
    ]
    assert (r.received, r.unparsed) == (2, 1)
    assert oct(path.stat().st_mode & 0o777) == "0o600" if path.exists() else True


def test_receiver_keeps_every_line_of_a_burst_in_order(tmp_path: Path) -> None:
    got: list[LogLine] = []
    path = tmp_path / "access.sock"
    r = AccessReceiver(path, got.extend)
    r.start()
    n = 5000
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(str(path))
            for i in range(n):  # a blocking sender waits while the queue is full: nothing is lost
                s.send(LINE.replace('p="/"', f'p="/{i}"').encode())
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        r.stop()
    assert [x.message.split()[1] for x in got] == [f"/{i}" for i in range(n)]


def test_the_datagram_queue_bound_is_raised_when_low(tmp_path: Path) -> None:
    low, high, absent = tmp_path / "low", tmp_path / "high", tmp_path / "absent"
    low.write_text("10\n")
    high.write_text("4096\n")
    assert deepen_datagram_queue(low, 1024) == 1024 and low.read_text() == "1024\n"
    assert deepen_datagram_queue(high, 1024) == 4096 and high.read_text() == "4096\n"
    assert deepen_datagram_queue(absent, 1024) == 0 and not absent.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(404 if "missing" in self.path else 200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.real
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_real_haproxy_logs_in_the_proposed_format(tmp_path: Path, upstream: int) -> None:
    """HAProxy 2.6 accepts the format and its lines parse; the config mirrors proxy/config.py."""
    sock, port = tmp_path / "access.sock", free_port()
    extra = render_access_log_config(sock)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        "\n".join(
            [
                "global",
                *extra["global"],
                "defaults",
                "    mode http",
                "    timeout connect 2s",
                "    timeout client 5s",
                "    timeout server 5s",
                "frontend http",
                f"    bind 127.0.0.1:{port}",
                "    http-request set-var(txn.service) str(web)",
                *extra["frontend http"],
                "    default_backend be_01",
                "backend be_01",
                f"    server s01 127.0.0.1:{upstream}",
            ]
        )
        + "\n"
    )
    got: list[LogLine] = []
    r = AccessReceiver(
        sock, got.extend, resolve=lambda be, srv, p: "web-d4-1" if (be, srv, p) == ("be_01", "s01", upstream) else None
    )
    r.start()
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.05)
        httpx.get(f'http://127.0.0.1:{port}/missing/a"b?x=1&y=%22', timeout=2)
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        r.stop()
        print(out.decode(errors="replace"))
    assert [x.message.split()[:3] for x in got] == [
        ["GET", "/ready", "200"],
        ["GET", "/missing/a%22b?x=1&y=%22", "404"],
    ]
    assert got[0].fields is not None and got[0].fields["bytes"] > 5  # %B counts the headers too
    first = got[0]
    assert (first.service, first.instance, first.deploy_id, first.level) == ("web", "web-d4-1", 4, Level.INFO)
    assert got[1].level == Level.WARN
    assert first.fields is not None and first.fields["tr"] is not None and first.fields["client"] == "127.0.0.1"
