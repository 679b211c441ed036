"""A/B harness for HAProxy config variants against nginx: same upstream, interleaved rounds.

``python -m bench.proxy_ab --rounds 5 --seconds 5 base nbthread1 ...`` starts one bench upstream
(A), nginx (bench/nginx.py) and one HAProxy per named variant, each on its own loopback port, all
pointing at A. A variant is slipstream's own ``haproxy.cfg`` (:func:`render_config`, one route
``bench`` -> A, the bench's pool of 4 backends) with a few lines replaced, so it measures exactly
what the daemon runs, one change at a time. Each round runs wrk once per target, the order
rotating per round; CPU is the proxy process's (and its children's) user+system time from /proc
over the run, divided by the requests wrk counted. Machine noise is large, so only compare
numbers from one run; the summary prints medians over the rounds.

``--instructions`` counts instead, under callgrind, the user-space instructions per request of
nginx (one process) and of each variant (one thread) over 1,000 keep-alive GETs: a figure the
machine's load does not move, for differences too small to see through CPU time on a shared box.

Each HAProxy runs in the foreground (``-db``) in its own session and is stopped by its pid.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import procs
from bench.nginx import Nginx, render_nginx_conf, render_upstream
from bench.proxy_bench import HOST, cpu_seconds, passive_opens
from bench.wrk import WrkResult, build_wrk_argv, run_wrk
from slipstream.proxy.config import SLOT_CHECK, render_config, render_hosts_map, render_services_map
from slipstream.proxy.model import Route, ServerState

Edit = Callable[[str], str]


def replace(old: str, new: str) -> Edit:
    """An edit replacing the line(s) containing ``old`` (whole line) with ``new`` ('' drops it)."""

    def edit(text: str) -> str:
        lines = text.splitlines()
        hits = [i for i, line in enumerate(lines) if old in line]
        if not hits:
            raise ValueError(f"variant edit: no line contains {old!r}")
        out = []
        for i, line in enumerate(lines):
            if i in hits:
                if new:
                    out.append(new)
            else:
                out.append(line)
        return "\n".join(out) + "\n"

    return edit


def add_after(anchor: str, new: str) -> Edit:
    """An edit inserting ``new`` after the first line containing ``anchor``."""

    def edit(text: str) -> str:
        lines = text.splitlines()
        i = next(i for i, line in enumerate(lines) if anchor in line)
        return "\n".join([*lines[: i + 1], new, *lines[i + 1 :]]) + "\n"

    return edit


def suffix(anchor: str, tail: str) -> Edit:
    """An edit appending ``tail`` to every line containing ``anchor``."""

    def edit(text: str) -> str:
        return "\n".join(line + tail if anchor in line else line for line in text.splitlines()) + "\n"

    return edit


@dataclass(frozen=True)
class Variant:
    """A named change to the rendered config: render_config keyword arguments plus line edits."""

    edits: tuple[Edit, ...] = ()
    backup_slots: int | None = None
    slots: int | None = None
    raw: str | None = None  # a whole config instead (``{port}`` and ``{upstream}`` filled in)


EMPTY = """\
global
    nbthread 2
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend http
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server a 127.0.0.1:{upstream}
"""

G = "    nbthread 2"
VARIANTS: dict[str, Variant] = {
    "base": Variant(),
    "empty": Variant(raw=EMPTY),
    "nbthread1": Variant(edits=(replace("nbthread 2", "    nbthread 1"),)),
    "cpumap": Variant(edits=(add_after(G, "    cpu-map auto:1/1-2 0-1"),)),
    "nohdr": Variant(edits=(replace("set-header X-Forwarded", ""),)),
    "nomap2": Variant(edits=(replace("set-var(txn.service)", ""),)),
    "noretry": Variant(edits=(replace("retry-on conn-failure", ""), replace("disable-l7-retry", ""))),
    "reuse_always": Variant(edits=(replace("http-reuse safe", "    http-reuse always"),)),
    "nobackup": Variant(backup_slots=0),
    "slots1": Variant(slots=1, backup_slots=0),
    "first": Variant(edits=(replace("balance roundrobin", "    balance first"),)),
    "nocheck": Variant(edits=(replace("default-server check", ""),)),
    "bufsize": Variant(edits=(add_after(G, "    tune.bufsize 8192"),)),
    "idlepool": Variant(edits=(add_after(G, "    tune.idle-pool.shared off"),)),
    "maxaccept": Variant(edits=(add_after(G, "    tune.maxaccept 16"),)),
    "runq": Variant(edits=(add_after(G, "    tune.runqueue-depth 16"),)),
    "maxpoll": Variant(edits=(add_after(G, "    tune.maxpollevents 64"),)),
    "noquickack": Variant(edits=(add_after("mode http", "    option http-no-delay"),)),
    "srvmaxconn": Variant(edits=(replace("default-server", f"    default-server maxconn 64 {SLOT_CHECK}"),)),
    "idlepool_sh": Variant(edits=(add_after(G, "    tune.idle-pool.shared on"),)),
    "nosplice": Variant(edits=(add_after(G, "    nosplice"),)),
    "fdcache": Variant(edits=(add_after(G, "    expose-experimental-directives\n    tune.fd.edge-triggered on"),)),
    "busy": Variant(edits=(add_after(G, "    busy-polling"),)),
    "svcfalse": Variant(edits=(suffix("set-var(txn.service)", " if FALSE"),)),
    "fwdfor": Variant(
        edits=(
            replace("set-header X-Forwarded-For", "    http-request del-header X-Forwarded-For\n    option forwardfor"),
        )
    ),
    "lean": Variant(
        edits=(
            suffix("set-var(txn.service)", " if FALSE"),
            replace("set-header X-Forwarded-For", "    http-request del-header X-Forwarded-For\n    option forwardfor"),
        )
    ),
    "sched": Variant(edits=(add_after(G, "    tune.sched.low-latency on"),)),
}


def render_variant(name: str, workdir: Path, port: int, upstream: int) -> Path:
    """Write the config (and maps) of variant ``name`` under ``workdir/name``; return the config."""
    variant = VARIANTS[name]
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "haproxy.cfg"
    if variant.raw is not None:
        cfg.write_text(variant.raw.format(port=port, upstream=upstream))
        return cfg
    route = Route("bench", (HOST,), (ServerState("a", upstream, "ready"),))
    assignment = {"bench": "be_00"}
    (d / "hosts.map").write_text(render_hosts_map([route], assignment))
    (d / "services.map").write_text(render_services_map(assignment))
    kwargs: dict[str, int] = {}
    if variant.slots is not None:
        kwargs["slots"] = variant.slots
    if variant.backup_slots is not None:
        kwargs["backup_slots"] = variant.backup_slots
    text = render_config(
        proxy_dir=d, http_port=port, bind_host="127.0.0.1", routes=[route], assignment=assignment, pool_size=4, **kwargs
    )
    for edit in variant.edits:
        text = edit(text)
    cfg.write_text(text)
    return cfg


@dataclass
class Sample:
    result: WrkResult
    us: float  # proxy CPU per request
    user_us: float  # of which in user space
    up_us: float  # upstream CPU per request
    accepts: float  # TCP accepts per request
    calls: dict[str, float]  # syscalls per request by name (with --syscalls)


SYSCALLS = ("recvfrom", "sendto", "epoll_wait", "epoll_ctl", "read", "write", "writev", "accept4", "connect", "close")


def start_syscall_count(pid: int, seconds: int) -> subprocess.Popen[str]:
    """``perf stat`` counting the syscalls of ``pid`` and its children for ``seconds``."""
    pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
    argv = ["perf", "stat", "-x,", "-e", events, "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def perf_top(pid: int, seconds: int, out: Path) -> subprocess.Popen[str]:
    """``perf record`` of ``pid`` and its children for ``seconds`` (no call graphs: light)."""
    pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    argv = [
        "perf",
        "record",
        "-q",
        "-F",
        "999",
        "-o",
        str(out),
        "-p",
        ",".join(map(str, pids)),
        "--",
        "sleep",
        str(seconds),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def perf_summary(data: Path, top: int = 25) -> str:
    """The share of samples per binary, then the top user-space symbols."""
    base = ["perf", "report", "-i", str(data), "--no-children", "--stdio", "-q"]
    dso = subprocess.run([*base, "--sort", "dso"], capture_output=True, text=True, timeout=60).stdout
    sym = subprocess.run([*base, "--sort", "dso,symbol"], capture_output=True, text=True, timeout=60).stdout
    user = [line for line in sym.splitlines() if "[.]" in line][:top]
    return "\n".join([*(line for line in dso.splitlines() if line.strip())][:6] + user)


def read_syscall_count(proc: subprocess.Popen[str]) -> dict[str, int]:
    _, err = proc.communicate(timeout=30)
    counts = {}
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_") and fields[0].isdigit():
            counts[fields[2].removeprefix("syscalls:sys_enter_")] = int(fields[0])
    return counts


def user_seconds(pid: int) -> float:
    """User CPU seconds of ``pid`` and its children (the proxy's own code, not the kernel's)."""
    p = psutil.Process(pid)
    return sum(q.cpu_times().user for q in (p, *p.children(recursive=True)))


def measure(
    port: int, pid: int, upstream_pid: int, seconds: int, syscalls: bool = False, profile: Path | None = None
) -> Sample:
    argv = build_wrk_argv(f"http://127.0.0.1:{port}/", threads=2, connections=50, seconds=seconds, host=HOST)
    before, up_before, opens = cpu_seconds(pid), cpu_seconds(upstream_pid), passive_opens()
    user_before = user_seconds(pid)
    perf = start_syscall_count(pid, seconds) if syscalls else None
    recorder = perf_top(pid, seconds - 1, profile) if profile is not None else None
    result = run_wrk(argv, seconds)
    n = max(1, result.requests)
    calls = {k: v / n for k, v in read_syscall_count(perf).items()} if perf is not None else {}
    if recorder is not None and profile is not None:
        recorder.wait(timeout=30)
        print(perf_summary(profile), flush=True)
    return Sample(
        result,
        (cpu_seconds(pid) - before) / n * 1e6,
        (user_seconds(pid) - user_before) / n * 1e6,
        (cpu_seconds(upstream_pid) - up_before) / n * 1e6,
        (passive_opens() - opens) / n,
        calls,
    )


def _get_on(conns: list[http.client.HTTPConnection], count: int) -> None:
    """``count`` keep-alive GETs spread over ``conns`` (each answered 200, body read)."""
    for i in range(count):
        conn = conns[i % len(conns)]
        conn.request("GET", "/", headers={"Host": HOST, "User-Agent": "wrk", "Accept": "*/*"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"got {resp.status} through the proxy under callgrind")


def instructions_per_request(argv: list[str], port: int, out: Path, log: Path, requests: int = 1000) -> float:
    """User-space instructions per request of the proxy started by ``argv`` (one process), counted by
    callgrind over ``requests`` keep-alive GETs after a warm-up. Unlike CPU time this does not move
    with the machine's load (two runs of one config agree to 0.1 %), so small config differences show;
    it weighs every instruction alike, so a vectorised copy counts more than it costs in time."""
    proc = procs.spawn(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *argv], log
    )
    try:
        procs.wait_for(lambda: procs.get(port, HOST, timeout=5)[0] == 200, 60, 0.2, "the proxy under callgrind")
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(4)]
        _get_on(conns, 40)  # warm-up: client and upstream connections open, pools filled
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, timeout=30, check=True)
        _get_on(conns, requests)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True, timeout=30, check=True)
        for conn in conns:
            conn.close()
    finally:
        procs.stop(proc, grace=30, sig=signal.SIGQUIT if argv[0] == "nginx" else signal.SIGUSR1)
    totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[0].split()[1]) / requests if totals else float("nan")


def count_instructions(names: list[str], workdir: Path, up_port: int) -> None:
    """Print instructions per request for nginx and each variant (HAProxy run with one thread)."""
    prefix = workdir / "nginx-cg"
    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    include = prefix / "upstream.conf"
    include.write_text(render_upstream(up_port))
    (prefix / "nginx.conf").write_text(render_nginx_conf(prefix, port, include))
    argv = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]
    argv += ["-g", "daemon off; master_process off;"]
    ngx = instructions_per_request(argv, port, workdir / "cg.nginx", workdir / "nginx-cg.log")
    print(f"{'nginx':<13} {ngx:>9,.0f} instructions/request (one process)", flush=True)
    for name in names:
        port = procs.free_port()
        cfg = render_variant(name, workdir, port, up_port)
        cfg.write_text(cfg.read_text().replace("nbthread 2", "nbthread 1"))
        n = instructions_per_request(
            ["haproxy", "-db", "-f", str(cfg)], port, workdir / f"cg.{name}", workdir / "cg.log"
        )
        print(f"{name:<13} {n:>9,.0f} instructions/request ({n / ngx:.2f}x nginx)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["base"], help=", ".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--syscalls", action="store_true", help="count syscalls per request (perf stat)")
    parser.add_argument("--perf", action="store_true", help="perf record each run; print the top symbols")
    parser.add_argument(
        "--quiet",
        type=float,
        default=1.0,
        help="with --direct, summarise only rounds whose direct run reached this share of its best (e.g. 0.8)",
    )
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per request under callgrind instead of wrk"
    )
    parser.add_argument("--direct", action="store_true", help="also run wrk straight at the upstream")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    workdir = Path(tempfile.mkdtemp(prefix="proxy-ab-"))
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    nginx: Nginx | None = None
    try:
        up_proc, up_port = procs.start_upstream("A", workdir, os.environ)
        started.append((up_proc, "upstream"))
        if args.instructions:
            count_instructions(args.variants, workdir, up_port)
            return
        targets: dict[str, tuple[int, int]] = {}  # name -> (port, pid)
        if args.direct:
            targets["direct"] = (up_port, up_proc.pid)
        if not args.no_nginx:
            nginx = Nginx(workdir / "nginx", procs.free_port(), up_port)
            nginx.start()
            assert nginx.proc is not None
            targets["nginx"] = (nginx.port, nginx.proc.pid)
        for name in args.variants:
            port = procs.free_port()
            cfg = render_variant(name, workdir, port, up_port)
            check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
            if check.returncode != 0:
                raise SystemExit(f"variant {name}: config rejected: {check.stdout}{check.stderr}")
            proc = procs.spawn(["haproxy", "-db", "-f", str(cfg)], workdir / f"{name}.log")
            started.append((proc, name))
            procs.wait_for(lambda p=port: procs.get(p, HOST) == (200, "ok A"), 10, 0.02, f"variant {name} routing")
            targets[name] = (port, proc.pid)
        print(f"targets: {', '.join(f'{k} pid {v[1]}' for k, v in targets.items())}", flush=True)
        names = list(targets)
        rows: dict[str, list[Sample]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                port, pid = targets[name]
                s = measure(
                    port, pid, up_proc.pid, args.seconds, args.syscalls, workdir / f"{name}.perf" if args.perf else None
                )
                rows[name].append(s)
                print(
                    f"round {r + 1} {name:<13} {s.result.rps:>8,.0f} rps  {s.us:6.1f} us/req (user {s.user_us:4.1f})  "
                    f"p50 {s.result.p50_ms:5.2f}  p99 {s.result.p99_ms:6.2f} ms  up {s.up_us:5.1f} us  "
                    f"accepts/req {s.accepts:.4f}  failed {s.result.failed}"
                    + "".join(f"  {k} {v:.2f}" for k, v in s.calls.items() if v >= 0.005),
                    flush=True,
                )
                time.sleep(0.5)
        if "direct" in rows and args.quiet < 1:
            best = max(s.result.rps for s in rows["direct"])
            keep = [i for i, s in enumerate(rows["direct"]) if s.result.rps >= args.quiet * best]
            print(f"\nquiet rounds (direct >= {args.quiet:.0%} of its best): {', '.join(str(i + 1) for i in keep)}")
            rows = {n: [xs[i] for i in keep] for n, xs in rows.items()}
        print(f"\nmedians over {len(rows[names[0]])} rounds of {args.seconds} s (wrk -t2 -c50)")
        print(f"{'target':<13} {'rps':>8} {'us/req':>7} {'user':>5} {'p99 ms':>7} {'up us':>6}")
        for name in names:
            xs = rows[name]
            print(
                f"{name:<13} {statistics.median(s.result.rps for s in xs):>8,.0f} "
                f"{statistics.median(s.us for s in xs):>7.1f} {statistics.median(s.user_us for s in xs):>5.1f} "
                f"{statistics.median(s.result.p99_ms for s in xs):>7.2f} "
                f"{statistics.median(s.up_us for s in xs):>6.1f}"
            )
    finally:
        if nginx is not None:
            nginx.stop()
        for proc, _ in reversed(started):
            procs.stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
