"""Target 5 of issue 15: one daemon with 200 web services.

The stand is the daemon bench's (bench/daemon_bench.py) with ``services`` minimal Python web
services (the bench upstream, ``buildCommand: echo build``) and an HAProxy pool large enough for
them (``SLIPSTREAM_PROXY_SERVICES``). Steps, in order:

1. ``apply`` once, not timed as the target: every service gets its first build and its virtualenv
   (the cold apply, reported apart as ``apply_cold_s``).
2. ``apply`` again, timed: every service builds anew from the same source, its virtualenv cached
   (the dependency files and build command are unchanged), starts, passes its check and flips.
3. ``flips`` deploys of one service (alternating two commits): the flip step the daemon records.
4. The idle daemon: RSS (daemon and HAProxy apart) and CPU % over ``idle_s`` after a settle.
5. ``slipstream status`` run as a subprocess ``status_runs`` times: wall-clock milliseconds.

Everything is stopped in ``finally`` (``slipstream down``, then SIGKILL of whatever still runs
under the temp home).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from bench import procs
from bench.daemon_bench import SLIPSTREAM, DaemonStand

SERVICES = 200
# HAProxy's pool of web backends must hold every service; the slack covers nothing else here.
POOL = 256


def run_scale(
    workdir: Path,
    services: int = SERVICES,
    flips: int = 5,
    idle_s: float = 10.0,
    status_runs: int = 10,
    say: Any = print,
) -> dict[str, Any]:
    """Measure one daemon with ``services`` web services; the ``scale.*`` numbers."""
    stand = DaemonStand(workdir, services, {"SLIPSTREAM_PROXY_SERVICES": str(max(POOL, services))})
    try:
        stand.start()
        say(f"       cold apply of {services} services (first builds, virtualenvs created)")
        cold_s = stand.apply_all()
        say(f"       cold apply took {cold_s:.1f} s; timed apply (builds cached)")
        apply_s = stand.apply_all()
        say(f"       apply took {apply_s:.1f} s; {flips} deploys of s01 for the flip step")
        flip_ms = [
            stand.timed_deploy("s01", stand.blueprint, stand.shas[v], f"ok {v}").deploy["steps"]["flip"] * 1000
            for v in ("2", "1") * (flips // 2) + ("2",) * (flips % 2)
        ]
        say(f"       idle daemon: {idle_s:g} s after a settle")
        idle = stand.idle(idle_s, quiet=5.0)
        say(f"       'slipstream status' x {status_runs}")
        status_ms = []
        for _ in range(status_runs):
            started = time.perf_counter()
            r = subprocess.run([*SLIPSTREAM, "status"], env=stand.env, capture_output=True, text=True, timeout=60)
            status_ms.append((time.perf_counter() - started) * 1000)
            if r.returncode != 0:
                raise RuntimeError(f"slipstream status failed: {r.stdout}{r.stderr}")
        apps = [p for p in procs.processes_under(stand.home) if "app.py" in " ".join(p.info["cmdline"] or [])]
        return {
            "services": idle["services"],
            "instances": idle["instances"],
            "apply_s": round(apply_s, 1),
            "apply_cold_s": round(cold_s, 1),
            "daemon_rss_mb": round(idle["daemon"]["rss_mb"], 1),
            "daemon_cpu_percent_idle": round(idle["daemon"]["cpu_percent"], 2),
            "daemon_threads": idle["daemon"]["threads"],
            "haproxy_rss_mb": round(idle["haproxy"]["rss_mb"], 1),
            "haproxy_cpu_percent_idle": round(idle["haproxy"]["cpu_percent"], 2),
            "app_rss_mb_median": round(statistics.median(_rss_mb(p) for p in apps), 1) if apps else None,
            "flip_ms_median": round(statistics.median(flip_ms), 2),
            "status_ms_median": round(statistics.median(status_ms), 1),
        }
    finally:
        stand.stop()


def _rss_mb(p: psutil.Process) -> float:
    try:
        return float(p.memory_info().rss / 2**20)
    except psutil.Error:
        return float("nan")
