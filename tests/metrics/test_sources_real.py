"""The readers against the real things: HAProxy's admin socket, a process tree, PostgreSQL, Redis."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from slipstream.metrics.parse import build_http_figures, parse_show_stat
from slipstream.metrics.sources import (
    descendants,
    process_tree,
    read_databases,
    read_disk,
    read_instance,
    read_keyvalue,
    read_proxy,
    read_stat,
    schedule_interval,
)
from slipstream.proxy import Proxy
from slipstream.runtime.base import InstanceState, InstanceStatus
from tests.polling import wait_for

pytestmark = pytest.mark.real


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_read_proxy_counts_real_requests(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            code = 500 if self.path == "/fail" else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    app = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=app.serve_forever, args=(0.05,), daemon=True).start()
    proxy = Proxy(tmp_path / "proxy", free_port(), pool_size=4, slots=2)
    try:
        proxy.start()
        proxy.set_route("web", ["web.localhost"])
        proxy.add_server("web", "d1-1", app.server_address[1])
        proxy.set_state("web", "d1-1", "ready")
        first = read_proxy(proxy.socket_path, proxy.services_map)
        _, snaps = build_http_figures({}, parse_show_stat(first.csv), first.backends, 0.0)
        for path in ["/"] * 8 + ["/fail"] * 2:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
            conn.request("GET", path, headers={"Host": "web.localhost"})
            conn.getresponse().read()
            conn.close()
        second = read_proxy(proxy.socket_path, proxy.services_map)
        figures, _ = build_http_figures(snaps, parse_show_stat(second.csv), second.backends, 10.0)
        assert second.backends["be_00"] == "web"
        web = figures["web"]
        assert (web.requests, web.status["2xx"], web.status["5xx"]) == (10, 8, 2)
    finally:
        proxy.stop(grace=1)
        app.shutdown()
        app.server_close()


def test_read_instance_from_a_process_tree() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nx = bytearray(40 * 1024 * 1024)\nwhile time.process_time() < 0.3: pass\ntime.sleep(30)",
        ]
    )
    try:  # 0.3 s of CPU however busy the machine is (a wall-clock loop got 0.07 s under load)
        wait_for(lambda: sum(psutil.Process(child.pid).cpu_times()[:2]) >= 0.25, what="the child's CPU")
        status = InstanceStatus("web-d1-1", InstanceState.RUNNING, child.pid, None, 1, None, None, None)
        r = read_instance(status, "web", 512, cgroup=None)
        assert r.memory_bytes is not None and r.memory_bytes > 40 * 1024 * 1024
        shared = read_instance(status, "web", 512, cgroup=None, tree=process_tree())  # a round's one /proc pass
        assert shared.memory_bytes is not None and shared.memory_bytes > 40 * 1024 * 1024
        assert r.cpu_seconds is not None and r.cpu_seconds >= 0.2
        assert (r.service, r.restarts, r.memory_limit_mb, r.state) == ("web", 1, 512, "running")
    finally:
        child.kill()
        child.wait()


def test_read_instance_prefers_its_cgroup(tmp_path: Path) -> None:
    group = tmp_path / "web-d1-1"  # a v2 cgroup directory as the kernel lays it out
    group.mkdir()
    (group / "memory.current").write_text("10485760\n")
    (group / "memory.stat").write_text("anon 8000000\ninactive_file 2097152\n")
    (group / "cpu.stat").write_text("usage_usec 1500000\n")
    status = InstanceStatus("web-d1-1", InstanceState.BACKOFF, None, None, 3, 137, 2.0, "killed")
    r = read_instance(status, "web", 64, cgroup=group)
    assert (r.memory_bytes, r.cpu_seconds) == (8 * 1024 * 1024, 1.5)


def test_read_instance_in_a_v1_cgroup_counts_the_cpu_of_its_members(tmp_path: Path) -> None:
    """cgroup v1's memory controller has no cpu.stat: the CPU comes from the pids the cgroup lists
    (no walk of every process on the machine for the tree)."""
    busy = "import time\nwhile time.process_time() < 0.3: pass\ntime.sleep(30)"  # 0.3 s of CPU, however busy
    leader = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c '{busy}'; sleep 30"])
    try:
        app = wait_for(lambda: (c := psutil.Process(leader.pid).children()) and c[0], what="the app under sh")
        wait_for(lambda: sum(app.cpu_times()[:2]) >= 0.25, what="the app burning its CPU")
        group = tmp_path / "web-d1-1"  # a v1 memory cgroup directory
        group.mkdir()
        (group / "memory.usage_in_bytes").write_text("10485760\n")
        (group / "memory.stat").write_text("total_inactive_file 2097152\n")
        (group / "cgroup.procs").write_text(f"{leader.pid}\n{app.pid}\n")
        status = InstanceStatus("web-d1-1", InstanceState.RUNNING, leader.pid, None, 0, None, None, None)
        r = read_instance(status, "web", 64, cgroup=group, cgroup_version=1)
        assert r.memory_bytes == 8 * 1024 * 1024
        assert r.cpu_seconds is not None and r.cpu_seconds >= 0.2  # the app's, through cgroup.procs
        (group / "cgroup.procs").write_text(f"{leader.pid}\n")  # the member list, not the tree, counts
        alone = read_instance(status, "web", 64, cgroup=group, cgroup_version=1)
        assert alone.cpu_seconds is not None and alone.cpu_seconds < 0.1
        pids = tmp_path / "pids-web-d1-1"  # no memory cgroup (no memory cap): the pids cgroup lists them
        pids.mkdir()
        (pids / "cgroup.procs").write_text(f"{leader.pid}\n{app.pid}\n")
        listed = read_instance(status, "web", None, cgroup=None, tree={}, listing=pids)
        assert listed.cpu_seconds is not None and listed.cpu_seconds >= 0.2  # the app's, with no tree
        assert listed.memory_bytes is not None and listed.memory_bytes > 1024 * 1024
        gone = read_instance(status, "web", None, cgroup=None, tree={}, listing=tmp_path / "none")
        assert gone.cpu_seconds is not None and gone.cpu_seconds < 0.1  # no listing, an empty tree: the leader
    finally:
        for p in psutil.Process(leader.pid).children(recursive=True):
            p.kill()
        leader.kill()
        leader.wait()


def test_descendants_come_from_one_process_tree() -> None:
    assert sorted(descendants(1, {1: [2, 3], 3: [4], 5: [6]})) == [1, 2, 3, 4]
    assert descendants(7, {}) == [7]
    tree = process_tree()
    assert os.getpid() in tree.get(os.getppid(), [])


def test_read_stat_agrees_with_psutil(tmp_path: Path) -> None:
    """One read of /proc/<pid>/stat gives what psutil reads from three files: parent, CPU with
    reaped children, RSS (a command name with spaces and parentheses does not shift the fields)."""
    busy = "import time\nx = bytearray(30 * 1024 * 1024)\nwhile time.process_time() < 0.2: pass\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        p = psutil.Process(child.pid)
        wait_for(lambda: sum(p.cpu_times()[:2]) >= 0.15, what="the child's CPU")
        stat = read_stat(child.pid)
        t, rss = p.cpu_times(), p.memory_info().rss
        assert stat is not None
        assert stat[0] == os.getpid()
        assert abs(stat[1] - (t.user + t.system + t.children_user + t.children_system)) < 0.05
        assert stat[2] > 30 * 1024 * 1024 and abs(stat[2] - rss) < 1024 * 1024
    finally:
        child.kill()
        child.wait()
    assert read_stat(child.pid) is None  # reaped: gone
    odd_name = tmp_path / "a) 1 (b"  # the kernel's comm field is the executable's file name
    odd_name.symlink_to(shutil.which("sleep") or "/bin/sleep")
    odd = subprocess.Popen([str(odd_name), "30"])
    try:
        assert b"(a) 1 (b)" in Path(f"/proc/{odd.pid}/stat").read_bytes()
        stat = read_stat(odd.pid)
        assert stat is not None and stat[0] == os.getpid() and stat[1] < 1
    finally:
        odd.kill()
        odd.wait()


def test_read_disk_and_schedule() -> None:
    disk = read_disk(Path("/"))
    assert 0 < disk.used_bytes < disk.total_bytes
    assert schedule_interval("*/15 * * * *", 1_700_000_000.0) == 900
    assert schedule_interval("0 3 * * *", 1_700_000_000.0) == 86400


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from slipstream.databases import Cluster
    from slipstream.databases.commands import find_pg_bin

    find_pg_bin()
    base = Path(tempfile.mkdtemp(prefix="slipstream-metrics-pg-"))
    c = Cluster(base / "postgres", base / "backups", traverse_root=base)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_read_databases_on_a_real_cluster(cluster: object) -> None:
    from slipstream.databases import Cluster

    assert isinstance(cluster, Cluster)
    info = cluster.ensure_database("metrics-db", password=secrets.token_urlsafe(12))
    readings = read_databases(cluster.admin_endpoint(), {info.database: "metrics-db"})
    assert [r.name for r in readings] == ["metrics-db"]
    r = readings[0]
    assert r.size_bytes > 1024 * 1024 and r.connections >= 0 and r.longest_transaction_s >= 0
    assert r.wal_failing_for_s is None
    assert read_databases(cluster.admin_endpoint(), {}) == []


def test_read_keyvalue_on_a_real_redis(tmp_path: Path) -> None:
    redis = shutil.which("redis-server")
    if redis is None:
        pytest.skip("redis-server is not installed")
    port, password = free_port(), secrets.token_hex(8)
    proc = subprocess.Popen(
        [
            redis,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r = read_keyvalue("cache", "127.0.0.1", port, "default", password)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert r.name == "cache" and r.used_memory_bytes > 0 and r.clients >= 1 and r.maxmemory_bytes == 0
    finally:
        proc.terminate()
        proc.wait(10)
