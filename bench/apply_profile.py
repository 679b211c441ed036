"""Where a many-service ``apply`` spends its time: the deploys' recorded steps and event
timeline, and the CPU of the daemon against everything else on the machine.

Run from the repo root: ``.venv/bin/python -m bench.apply_profile 50`` (services; default 50).
It starts the scale stand (bench/scale_bench.py), applies once cold, then applies again while
sampling CPU, and prints: the wall time, the daemon's CPU seconds (its own threads) and the
machine's busy CPU seconds over the timed apply, the median and the sum of each recorded step,
and the median gap between the deploy's events (queued → build → start → healthy → flip → live).
With ``PY_SPY`` naming a py-spy binary (not a project dependency), the daemon's threads that hold
the GIL are sampled during the timed apply into ``apply.collapsed.txt`` (collapsed stacks) in the
current directory: its CPU in Python, not its waits. With ``PERF=1`` instead, ``perf record -a``
samples the whole machine into ``apply.perf.data``. ``SLIPSTREAM_BUILD_SLOTS`` is passed on.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench import procs
from bench.daemon_bench import DaemonStand
from bench.scale_bench import POOL

MARKS = (
    ("queued", None),
    ("build started", "-----> Building"),
    ("checked out", "==> Checking out commit"),  # a build slot was free: the commit is resolved
    ("venv found", "==> Reusing virtualenv"),
    ("build command", "==> Running build command"),
    ("built", "==> Build "),
    ("starting", "-----> Starting"),
    ("healthy", "       healthy after"),
    ("flipped", "-----> Traffic switched"),
    ("live", "-----> Deploy "),  # and "is live": see _reached
)


def _busy_cpu_s() -> float:
    """Seconds of CPU the whole machine spent not idle since boot (all cores)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _reached(message: str, name: str, prefix: str | None) -> bool:
    return prefix is not None and message.startswith(prefix) and (name != "live" or message.endswith(" is live"))


def timeline(stand: DaemonStand, deploy_ids: list[int]) -> dict[str, Any]:
    """Per deploy: the moment (s after the apply's first deploy was created) of each mark."""
    recs = [stand.api("GET", f"/v1/deploys/{i}")["deploy"] for i in deploy_ids]
    t0 = min(r["created_at"] for r in recs)
    rows = []
    for r in recs:
        mine = sorted(stand.api("GET", f"/v1/deploys/{r['id']}/events")["events"], key=lambda e: e["ts"])
        row: dict[str, float] = {"queued": r["created_at"] - t0}
        for name, prefix in MARKS[1:]:
            hit = next((e["ts"] for e in mine if _reached(e["message"], name, prefix)), None)
            if hit is not None:
                row[name] = hit - t0
        row["finished"] = (r["finished_at"] or 0) - t0
        rows.append(row)
    steps: dict[str, list[float]] = {}
    for r in recs:
        for k, v in (r.get("steps") or {}).items():
            steps.setdefault(k, []).append(v)
    return {"rows": rows, "steps": steps}


def main(services: int = 50) -> None:
    spy = os.environ.get("PY_SPY")
    with tempfile.TemporaryDirectory(prefix="apply-profile-") as tmp:
        os.chmod(tmp, 0o711)  # the services' users cross it to their builds
        extra = {k: v for k, v in os.environ.items() if k == "SLIPSTREAM_BUILD_SLOTS"}
        stand = DaemonStand(Path(tmp), services, {"SLIPSTREAM_PROXY_SERVICES": str(max(POOL, services)), **extra})
        try:
            stand.start()
            cold = stand.apply_all()
            print(f"cold apply of {services}: {cold:.1f} s")
            time.sleep(3)
            daemon = psutil.Process(stand.pid())
            haproxy = psutil.Process(stand.haproxy_pid())
            d0, m0, h0 = daemon.cpu_times(), _busy_cpu_s(), haproxy.cpu_times()
            sampler = None
            if os.environ.get("PERF"):
                sampler = subprocess.Popen(
                    ["perf", "record", "-a", "-F", "199", "-o", "apply.perf.data"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            elif spy:
                sampler = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "-p",
                        str(stand.pid()),
                        "-f",
                        "raw",
                        "-o",
                        "apply.collapsed.txt",
                        "-r",
                        "50",
                        "--nonblocking",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            started = time.perf_counter()
            ids = [int(d["id"]) for d in stand.api("POST", "/v1/apply", {"blueprint": str(stand.blueprint)})["deploys"]]
            posted = time.perf_counter() - started
            for i in ids:
                stand.wait_finished(i, timeout=600)
            wall = time.perf_counter() - started
            d1, m1, h1 = daemon.cpu_times(), _busy_cpu_s(), haproxy.cpu_times()
            apps = [q for q in procs.processes_under(stand.home) if q.pid not in (daemon.pid, haproxy.pid)]
            new_apps = sum(sum(q.cpu_times()[:2]) for q in apps if q.create_time() > time.time() - wall - 1)
            if sampler is not None:
                sampler.send_signal(2)
                sampler.wait(60)
            print(f"timed apply of {services}: {wall:.1f} s (POST answered in {posted:.2f} s)")
            print(
                f"CPU over it: daemon {d1.user - d0.user:.1f} s user + {d1.system - d0.system:.1f} s sys; "
                f"machine busy {m1 - m0:.1f} s of {wall * (os.cpu_count() or 1):.1f} s available"
            )
            print(
                f"  daemon's reaped children (build commands, git, tar; the old instances' whole lives) "
                f"{d1.children_user - d0.children_user + d1.children_system - d0.children_system:.1f} s; "
                f"new instances so far {new_apps:.1f} s; haproxy {sum(h1[:2]) - sum(h0[:2]):.1f} s"
            )
            t = timeline(stand, ids)
            print("recorded steps (median / sum, s):")
            for k, v in sorted(t["steps"].items()):
                print(f"  {k:16} {statistics.median(v):8.3f} {sum(v):9.1f}  (n={len(v)})")
            names = [m for m, _ in MARKS] + ["finished"]
            print("median gap to the next mark, and when the first/last deploy reached each mark (s):")
            for a, b in zip(names, names[1:], strict=False):
                gaps = [r[b] - r[a] for r in t["rows"] if a in r and b in r]
                reach = [r[b] for r in t["rows"] if b in r]
                if gaps:
                    print(
                        f"  {a:>13} -> {b:13} median {statistics.median(gaps):7.3f}  "
                        f"first {min(reach):6.2f}  last {max(reach):6.2f}"
                    )
        finally:
            stand.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
