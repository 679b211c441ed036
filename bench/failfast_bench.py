"""Fail-fast time (issue #10): how soon a crash-looping release ends in ``update_failed``; and
(issue 15) what a release that crashes right after its first good check costs the clients.

``bench-crash`` first goes live with the bench app (untimed; it also makes the service's
virtualenv). Then, ``runs`` times, ``slipstream deploy bench-crash`` (the real CLI, its wall time
taken) deploys a release whose start command prints one line and exits 7 at once; the deploy
record's ``created_at`` -> ``finished_at`` is the daemon's own fail time, free of the CLI's
start-up. Every run must end ``update_failed`` with the CLI exiting 1, else the run is an error.

Crash after check: with ``bench-crash`` live, wrk (50 keep-alive connections, the counting script)
runs through the daemon's HAProxy while ``slipstream deploy`` ships a release that passes its first
health check, is flipped to at once (no stability wait) and exits 0.3 s later. Every request must
succeed: the old release is the new one's backup in HAProxy during the settle window, and the
deploy ends ``update_failed`` with traffic back on the old release.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from bench.daemon_bench import DaemonStand
from bench.extras_repo import CRASH_SERVICE, ExtrasRepo
from bench.wrk import COUNT_LUA, WrkResult, build_wrk_argv, run_wrk

CLI_TIMEOUT_S = 120


def fail_seconds(deploy: dict[str, Any]) -> float:
    """Seconds from a deploy record's creation to its end."""
    if deploy.get("finished_at") is None:
        raise ValueError(f"deploy {deploy.get('id')} has not finished")
    return float(deploy["finished_at"]) - float(deploy["created_at"])


def run_crash_loop(stand: DaemonStand, repo: ExtrasRepo, runs: int) -> list[dict[str, Any]]:
    """Per run: ``fail_s`` (the record), ``cli_s`` (the CLI's wall time), the status and message."""
    sha = repo.head()
    stand.wait_finished(stand.deploy_commit(CRASH_SERVICE, repo.crash_ok_yaml, sha))
    out = []
    for _ in range(runs):
        argv = ["deploy", CRASH_SERVICE, "--blueprint", str(repo.crash_yaml), "--commit", sha]
        started = time.perf_counter()
        r = stand.cli(*argv, timeout=CLI_TIMEOUT_S)
        cli_s = time.perf_counter() - started
        d = stand.latest_deploy(CRASH_SERVICE)
        if r.returncode != 1 or d["status"] != "update_failed":
            raise RuntimeError(
                f"the crash-looping deploy {d['id']} ended {d['status']} (CLI exit {r.returncode}), "
                f"not update_failed with exit 1: {(r.stderr or r.stdout).strip()[-400:]}"
            )
        events = stand.api("GET", f"/v1/deploys/{d['id']}/events")["events"]
        out.append(
            {
                "deploy_id": d["id"],
                "fail_s": fail_seconds(d),
                "cli_s": cli_s,
                "status": d["status"],
                "message": (d.get("message") or "").splitlines()[0] if d.get("message") else "",
                "timeline": render_timeline(events, float(d["created_at"])),
            }
        )
    return out


def run_crash_after_check(stand: DaemonStand, repo: ExtrasRepo, runs: int, workdir: Path) -> list[dict[str, Any]]:
    """Per run: the load's requests and failures while a crash-after-check release was deployed,
    and the deploy's status and message."""
    sha = repo.head()
    stand.wait_finished(stand.deploy_commit(CRASH_SERVICE, repo.crash_ok_yaml, sha))
    lua = workdir / "count.lua"
    lua.write_text(COUNT_LUA)
    seconds, lead = 6, 1.0
    argv = build_wrk_argv(
        f"http://127.0.0.1:{stand.http_port}/",
        threads=2,
        connections=50,
        seconds=seconds,
        host=f"{CRASH_SERVICE}.localhost",
        script=lua,
    )
    out = []
    for _ in range(runs):
        loads: list[WrkResult] = []
        load = threading.Thread(target=lambda: loads.append(run_wrk(argv, seconds)), daemon=True)
        load.start()
        time.sleep(lead)
        argv_deploy = ["deploy", CRASH_SERVICE, "--blueprint", str(repo.crash_after_yaml), "--commit", sha]
        r = stand.cli(*argv_deploy, timeout=CLI_TIMEOUT_S)
        load.join(timeout=seconds + 20)
        d = stand.latest_deploy(CRASH_SERVICE)
        if r.returncode != 1 or d["status"] != "update_failed" or not loads:
            raise RuntimeError(
                f"the crash-after-check deploy {d['id']} ended {d['status']} (CLI exit {r.returncode}), "
                f"not update_failed with exit 1: {(r.stderr or r.stdout).strip()[-400:]}"
            )
        w = loads[0]
        out.append(
            {
                "deploy_id": d["id"],
                "requests": w.requests,
                "failed": w.failed,
                "socket_errors": w.socket_errors,
                "non2xx": w.non2xx,
                "status": d["status"],
                "message": (d.get("message") or "").splitlines()[0] if d.get("message") else "",
            }
        )
        print(
            f"       crash after check: deploy {d['id']} {d['status']}, {w.requests:,} requests, {w.failed} failed",
            flush=True,
        )
    return out


def render_timeline(events: list[dict[str, Any]], since: float) -> list[tuple[int, str]]:
    """(ms after ``since``, first line of the message) of each event, in order."""
    return [
        (round((float(e["ts"]) - since) * 1000), str(e["message"]).splitlines()[0] if e["message"] else "")
        for e in events
    ]
