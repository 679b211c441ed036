"""Benchmarks 1 and 2: proxy overhead (direct vs slipstream's HAProxy vs nginx) and flips under load.

The stand: two bench upstreams (A, B), slipstream's :class:`~slipstream.proxy.Proxy` on a temp
dir and free port with two services -- ``bench`` (server A only, for throughput) and ``flip``
(servers A and B, flipped with ``Proxy.switch``) -- and an nginx pointing at A. For issue 13 a
second ``Proxy``, identical but for HAProxy's access log (``Proxy(..., access_log=socket)``), routes
``bench`` to A too; its lines go to the daemon's side of the access log, run as a child process
(:mod:`bench.access_bench`: receiver, pipeline, store), so "access log on" costs what it costs
the daemon.

Lifecycle: ``ProxyStand.start()`` starts the upstreams, HAProxy, the access sink (its socket
bound first, as the daemon does), the logging HAProxy and nginx; ``throughput()`` runs rounds of
wrk against the four targets side by side, rotating the order (after the access-log-on run it
waits until the sink has stored every line, so that run's daemon CPU includes the catch-up);
``realistic()`` runs direct and slipstream side by side against upstream R, which spends
~100 us of CPU on every request (a small JSON rendered), as an app would, so the proxy's share is
what it is next to real work; ``flips()`` runs wrk with the counting script while a thread flips
A<->B a fixed number of times, first with ``Proxy.switch``, then with nginx reloads. ``stop()``
stops everything it started.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import procs
from bench.access_bench import AccessSide, AccessSink, side_between
from bench.nginx import Nginx
from bench.wrk import COUNT_LUA, WrkResult, build_wrk_argv, run_wrk
from slipstream.proxy import Proxy

HOST = "bench.localhost"
FLIP_HOST = "flip.localhost"
REAL_HOST = "real.localhost"  # the realistic upstream R: ~100 us of CPU per request
REAL_WORK_US = 100
ACCESS_LOG = "slipstream_access_log"  # the target: slipstream's HAProxy with its access log on
USER_SPLIT = ("haproxy", "nginx")  # processes whose user-space CPU is also recorded apart (key + "_user")


@dataclass(frozen=True)
class LoadRun:
    """One throughput run: wrk's result, CPU used per process (% of one core), upstream connects."""

    result: WrkResult
    cpu: dict[str, float]
    upstream_connects: int  # TCP connections accepted on the machine during the run (nstat)
    machine_idle: float = float("nan")  # % of all cores left idle during the run
    access: AccessSide | None = None  # the daemon's side of the access log (the access-log-on run)

    def cpu_us_per_request(self, key: str) -> float:
        """Microseconds of CPU process ``key`` spent per request in this run."""
        return self.cpu.get(key, 0.0) / 100 * self.result.duration_s / max(1, self.result.requests) * 1e6


def cpu_seconds(pid: int | None, user_only: bool = False) -> float:
    """User + system (or only user) CPU seconds of ``pid`` and its children so far (0 when gone)."""
    if pid is None:
        return 0.0
    try:
        p = psutil.Process(pid)
        total = 0.0
        for q in (p, *p.children(recursive=True)):
            t = q.cpu_times()
            total += t.user + (0.0 if user_only else t.system)
        return total
    except psutil.Error:
        return 0.0


def passive_opens() -> int:
    """The kernel's count of accepted TCP connections (TcpPassiveOpens), or -1 without nstat."""
    try:
        out = subprocess.run(
            ["nstat", "-az", "TcpPassiveOpens"], capture_output=True, text=True, timeout=5
        ).stdout.split()
        return int(out[out.index("TcpPassiveOpens") + 1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return -1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class FlipRun:
    """One flip run: the load's result, how many flips, and how long each flip call took."""

    mechanism: str
    flips: int
    load: WrkResult
    apply_ms: list[float] = field(default_factory=list)


class ProxyStand:
    """Upstreams A and B, slipstream's HAProxy and an nginx, all on loopback under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.upstreams: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.proxy: Proxy | None = None
        self.logged: Proxy | None = None  # the same HAProxy with its access log on
        self.sink = AccessSink(workdir / "access")
        self.nginx: Nginx | None = None
        self.lua = workdir / "count.lua"

    def start(self) -> None:
        """Start A, B, HAProxy (routes ``bench`` -> A, ``flip`` -> A|B), the access sink, the logging
        HAProxy (``bench`` -> A) and nginx -> A."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.lua.write_text(COUNT_LUA)
        for ident in ("A", "B"):
            self.upstreams[ident] = procs.start_upstream(ident, self.workdir, os.environ)
        self.upstreams["R"] = procs.start_upstream("R", self.workdir, os.environ, work_us=REAL_WORK_US)
        a, b = self.port("A"), self.port("B")
        self.proxy = Proxy(self.workdir / "proxy", procs.free_port(), pool_size=4)
        self.proxy.start()
        self.proxy.set_route("bench", [HOST])
        self.proxy.add_server("bench", "a", a)
        self.proxy.set_state("bench", "a", "ready")
        self.proxy.set_route("flip", [FLIP_HOST])
        self.proxy.add_server("flip", "a", a)
        self.proxy.add_server("flip", "b", b)
        self.proxy.set_state("flip", "a", "ready")
        self.proxy.set_route("real", [REAL_HOST])
        self.proxy.add_server("real", "r", self.port("R"))
        self.proxy.set_state("real", "r", "ready")
        procs.wait_for(lambda: procs.get(self.proxy_port, HOST) == (200, "ok A"), 10, 0.02, "HAProxy routing to A")
        self.sink.start()
        self.logged = Proxy(self.workdir / "proxy-log", procs.free_port(), pool_size=4, access_log=self.sink.socket)
        self.logged.start()
        self.logged.set_route("bench", [HOST])
        self.logged.add_server("bench", "a", a)
        self.logged.set_state("bench", "a", "ready")
        port = self.logged.http_port
        procs.wait_for(lambda: procs.get(port, HOST) == (200, "ok A"), 10, 0.02, "the logging HAProxy routing to A")
        procs.wait_for(lambda: self.sink.stats().stored > 0, 10, 0.05, "the access sink storing a line")
        self.nginx = Nginx(self.workdir / "nginx", procs.free_port(), a)
        self.nginx.start()

    def port(self, ident: str) -> int:
        return self.upstreams[ident][1]

    @property
    def proxy_port(self) -> int:
        assert self.proxy is not None
        return self.proxy.http_port

    def targets(self) -> dict[str, int]:
        """Target name -> port; all four are sent the same Host header."""
        assert self.nginx is not None and self.logged is not None
        return {
            "direct": self.port("A"),
            "slipstream": self.proxy_port,
            ACCESS_LOG: self.logged.http_port,
            "nginx": self.nginx.port,
        }

    def pids(self) -> dict[str, int | None]:
        """Pids of the processes a load runs through (for reading their CPU use)."""
        return {
            "upstream_A": self.upstreams["A"][0].pid,
            "upstream_R": self.upstreams["R"][0].pid,
            "haproxy": self.proxy.pid() if self.proxy else None,
            "haproxy_access_log": self.logged.pid() if self.logged else None,
            "access_sink": self.sink.pid,
            "nginx": self.nginx.proc.pid if self.nginx and self.nginx.proc else None,
        }

    def stop(self) -> None:
        """Stop nginx, both HAProxies, the access sink and the upstreams (each attempted, whatever fails)."""
        if self.nginx is not None:
            self.nginx.stop()
        for proxy in (self.proxy, self.logged):
            if proxy is not None:
                try:
                    proxy.stop(grace=2)
                except Exception as exc:  # keep stopping the rest
                    print(f"warning: stopping HAProxy failed: {exc}")
        self.sink.stop()
        for proc, _ in self.upstreams.values():
            procs.stop(proc)

    # -- benchmark 1 ---------------------------------------------------------------------------
    def throughput(
        self, rounds: int, seconds: int, threads: int = 2, connections: int = 50, gap: float = 1.0
    ) -> list[dict[str, LoadRun]]:
        """``rounds`` rounds of one wrk run per target; the start of the order rotates per round."""
        names = list(self.targets())
        results: list[dict[str, LoadRun]] = []
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            row: dict[str, LoadRun] = {}
            for name in order:
                argv = build_wrk_argv(
                    f"http://127.0.0.1:{self.targets()[name]}/",
                    threads=threads,
                    connections=connections,
                    seconds=seconds,
                    host=HOST,
                )
                row[name] = self._measured(argv, seconds, self.sink if name == ACCESS_LOG else None)
                w, side = row[name].result, row[name].access
                print(
                    f"       round {r + 1} {name:<21} {w.rps:>9,.0f} req/s  p50 {w.p50_ms:.2f} ms  "
                    f"p99 {w.p99_ms:.2f} ms  failed {w.failed}"
                    + (
                        f"  (daemon side: {side.received:,} lines, {side.us_per_line():.0f} us CPU each, "
                        f"dropped {side.dropped:,}, settled {side.settle_s:.1f} s after)"
                        if side
                        else ""
                    ),
                    flush=True,
                )
                time.sleep(gap)
            results.append(row)
        return results

    def realistic(self, rounds: int, seconds: int, gap: float = 1.0) -> list[dict[str, LoadRun]]:
        """``rounds`` rounds of direct and slipstream against upstream R (~100 us CPU a request)."""
        targets = {"direct": self.port("R"), "slipstream": self.proxy_port}
        results: list[dict[str, LoadRun]] = []
        for r in range(rounds):
            row: dict[str, LoadRun] = {}
            for name in list(targets)[r % 2 :] + list(targets)[: r % 2]:
                argv = build_wrk_argv(
                    f"http://127.0.0.1:{targets[name]}/", threads=2, connections=50, seconds=seconds, host=REAL_HOST
                )
                row[name] = self._measured(argv, seconds)
                w = row[name].result
                print(
                    f"       realistic round {r + 1} {name:<10} {w.rps:>9,.0f} req/s  p50 {w.p50_ms:.2f} ms  "
                    f"p99 {w.p99_ms:.2f} ms  failed {w.failed}",
                    flush=True,
                )
                time.sleep(gap)
            results.append(row)
        return results

    def _measured(self, argv: list[str], seconds: int, sink: AccessSink | None = None) -> LoadRun:
        """Run wrk once, with the CPU each process used and the TCP connects during the run; with
        ``sink``, also what the daemon's side did with the run's access lines until it settled."""
        pids = self.pids()
        before = {k: cpu_seconds(pid) for k, pid in pids.items()}
        user_before = {k: cpu_seconds(pids[k], user_only=True) for k in USER_SPLIT}
        sink_before = sink.stats() if sink else None
        opens_before = passive_opens()
        wrk_before, idle_before = _children_cpu(), psutil.cpu_times().idle
        started = time.monotonic()
        result = run_wrk(argv, seconds)
        wall = time.monotonic() - started
        idle = 100 * (psutil.cpu_times().idle - idle_before) / wall / (os.cpu_count() or 1)
        cpu = {k: 100 * (cpu_seconds(pid) - before[k]) / wall for k, pid in pids.items()}
        for k in USER_SPLIT:  # "haproxy_user": the proxy's own code; the rest of "haproxy" is the kernel's
            cpu[f"{k}_user"] = 100 * (cpu_seconds(pids[k], user_only=True) - user_before[k]) / wall
        cpu["wrk"] = 100 * (_children_cpu() - wrk_before) / wall
        opens = passive_opens() - opens_before
        access = None
        if sink is not None and sink_before is not None:
            ended = time.monotonic()
            after = sink.settled()
            sink_cpu = cpu_seconds(sink.pid) - before["access_sink"]
            access = side_between(sink_before, after, sink_cpu, time.monotonic() - ended)
        return LoadRun(result, cpu, opens, idle, access)

    # -- benchmark 2 ---------------------------------------------------------------------------
    def flips(self, count: int, interval: float, lead: float = 2.0) -> tuple[FlipRun, FlipRun]:
        """The flip run with ``Proxy.switch``, then with nginx reloads; same load, same pacing."""
        assert self.proxy is not None and self.nginx is not None
        proxy, nginx = self.proxy, self.nginx
        a, b = self.port("A"), self.port("B")

        def switch(i: int) -> None:
            to_b = i % 2 == 0
            proxy.switch("flip", ready=["b" if to_b else "a"], drain=["a" if to_b else "b"])

        def reload(i: int) -> None:
            nginx.point_to(b if i % 2 == 0 else a)
            nginx.reload()

        slip = self._flip_run("slipstream", self.proxy_port, FLIP_HOST, switch, count, interval, lead)
        nginx.point_to(a)
        nginx.reload()
        nginx.settle()
        time.sleep(1.0)
        ngx = self._flip_run("nginx_reload", nginx.port, FLIP_HOST, reload, count, interval, lead)
        return slip, ngx

    def _flip_run(
        self,
        mechanism: str,
        port: int,
        host: str,
        flip: Callable[[int], None],
        count: int,
        interval: float,
        lead: float,
    ) -> FlipRun:
        seconds = int(lead + count * interval + lead + 0.999)
        argv = build_wrk_argv(
            f"http://127.0.0.1:{port}/", threads=2, connections=50, seconds=seconds, host=host, script=self.lua
        )
        apply_ms: list[float] = []
        done = threading.Event()
        errors: list[BaseException] = []

        def flipper() -> None:
            try:
                if done.wait(lead):
                    return
                for i in range(count):
                    started = time.perf_counter()
                    flip(i)
                    apply_ms.append((time.perf_counter() - started) * 1000)
                    if done.wait(max(0.0, interval - (time.perf_counter() - started))):
                        return
            except BaseException as exc:  # reported after the load ends
                errors.append(exc)

        thread = threading.Thread(target=flipper, name=f"flipper-{mechanism}", daemon=True)
        thread.start()
        try:
            result = run_wrk(argv, seconds)
        finally:
            done.set()
            thread.join(timeout=30)
        if errors:
            raise RuntimeError(f"{mechanism} flip failed: {errors[0]}") from errors[0]
        print(
            f"       {mechanism:<13} {len(apply_ms)} flips, {result.requests:,} requests, "
            f"{result.failed} failed (non-2xx {result.non2xx}, socket {result.socket_errors}), "
            f"bodies A/B {result.lua.get('bodyA')}/{result.lua.get('bodyB')}",
            flush=True,
        )
        return FlipRun(mechanism, len(apply_ms), result, apply_ms)
