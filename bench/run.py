"""`make bench`: every benchmark of issue #6 in one run, side by side, on loopback.

Run from the repo root as ``.venv/bin/python -m bench.run`` (``--quick`` for a short smoke run that
writes nothing). Steps:

1. Install what is missing (wrk, nginx, haproxy: Debian packages) and record the machine.
2. Proxy stand (bench/proxy_bench.py): throughput rounds direct / slipstream / nginx, then flips
   under load with ``Proxy.switch`` and with nginx reloads.
3. Daemon stand (bench/daemon_bench.py): deploys and rollbacks of one service, the app's boot and
   build-command times, the CLI's start-up, ``apply`` of 20 services, ``kill -9`` restarts, and
   the idle daemon and HAProxy.
4. Print the table; write bench/report.json and docs/benchmarks.md.

Everything started is stopped in ``finally`` blocks; a watchdog (SIGALRM) ends the run before
10 minutes, so even a hung step leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench import procs, profile, tools
from bench.analysis import render_analysis
from bench.daemon_bench import BUILD_COMMAND, DaemonStand
from bench.docs import render_markdown
from bench.proxy_bench import ProxyStand
from bench.report import Results, build_report, check_targets, render_table

ROOT = Path(__file__).resolve().parent.parent
WATCHDOG_S = 570


@dataclass(frozen=True)
class Plan:
    """How much of each benchmark to run."""

    rounds: int = 3
    seconds: int = 10
    flips: int = 40
    flip_interval: float = 0.5
    deploys: int = 10
    rollbacks: int = 5
    restarts: int = 5
    boots: int = 5
    idle_s: float = 10.0


QUICK = Plan(rounds=1, seconds=3, flips=6, flip_interval=0.3, deploys=2, rollbacks=2, restarts=1, boots=2, idle_s=3.0)


def _watchdog(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"the bench ran past {WATCHDOG_S} s; stopping everything it started")


def step(title: str) -> None:
    print(f"-----> {title}", flush=True)


def run_proxy(plan: Plan, work: Path, r: Results) -> None:
    """Benchmarks 1 and 2."""
    stand = ProxyStand(work / "proxy-stand")
    try:
        step("Starting upstreams A and B, slipstream's HAProxy and nginx")
        stand.start()
        step(f"Proxy overhead: {plan.rounds} rounds of wrk -t2 -c50 -d{plan.seconds}s per target")
        r.rounds = stand.throughput(plan.rounds, plan.seconds)
        step(f"Flips under load: {plan.flips} flips every {plan.flip_interval} s, Proxy.switch then nginx reload")
        r.flips = stand.flips(plan.flips, plan.flip_interval)
    finally:
        stand.stop()


def run_daemon(plan: Plan, work: Path, r: Results) -> None:
    """Benchmarks 3 to 6."""
    stand = DaemonStand(work / "daemon-stand")
    try:
        step("Starting the daemon (slipstream up --detach) on a temp home")
        stand.start()
        r.empty_rss_mb = stand.rss_mb()
        step("First deploy of s01 (not timed)")
        r.first_deploy = stand.first_deploy("s01")
        step(f"Deploys: {plan.deploys} of s01, alternating two commits")
        r.deploys = stand.deploys("s01", plan.deploys)
        step(f"Rollbacks: {plan.rollbacks} of s01")
        r.rollbacks = stand.rollbacks("s01", plan.rollbacks)
        step("App boot (spawn -> first 200), buildCommand and CLI start-up, measured apart")
        python, app = stand.build_paths("s01")
        r.boot_ms = procs.time_boot(python, app, os.environ, plan.boots, work)
        r.build_command_ms = procs.time_command(["/bin/sh", "-c", BUILD_COMMAND], plan.boots)
        r.cli_ms = procs.time_command([sys.executable, "-m", "slipstream", "status", "--json"], 3, env=stand.env)
        step("Applying the blueprint: 20 services")
        r.apply_s = stand.apply_all()
        step(f"Restarts: kill -9 of the app in {plan.restarts} services (each its first restart)")
        r.restarts = [stand.restart(f"s{i:02d}") for i in range(2, 2 + plan.restarts)]
        step(f"Idle daemon: sampling {plan.idle_s:g} s")
        r.idle = stand.idle(plan.idle_s)
        if profile.py_spy() is not None:
            step("Profiling the idle daemon with py-spy (5 s)")
            r.daemon_py_spy = profile.py_spy_top(stand.pid(), 5, work)
    finally:
        step("Stopping the daemon and everything it started")
        stand.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print the table; write the report and the docs page (unless --quick)."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run; writes no files")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _watchdog)
    signal.alarm(WATCHDOG_S)
    try:
        tools.ensure_tools()
        r = Results(machine=tools.machine_info())
        with tempfile.TemporaryDirectory(prefix="ssb-", dir="/tmp") as tmp:
            work = Path(tmp)
            run_proxy(plan, work, r)
            run_daemon(plan, work, r)
    finally:
        signal.alarm(0)
    r.import_rss = profile.import_rss()
    r.elapsed_s = time.monotonic() - started
    report = build_report(r)
    targets = check_targets(report)
    print()
    print(render_table(report, targets))
    print(f"\nbench finished in {r.elapsed_s:.0f} s")
    if args.quick:
        print(render_analysis(r, targets))
    else:
        (ROOT / "bench" / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (ROOT / "docs" / "benchmarks.md").write_text(render_markdown(r, report, targets, render_analysis(r, targets)))
        print("wrote bench/report.json and docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
