"""Fail-fast time (issue #10): how soon a crash-looping release ends in ``update_failed``.

``bench-crash`` first goes live with the bench app (untimed; it also makes the service's
virtualenv). Then, ``runs`` times, ``slipstream deploy bench-crash`` (the real CLI, its wall time
taken) deploys a release whose start command prints one line and exits 7 at once; the deploy
record's ``created_at`` -> ``finished_at`` is the daemon's own fail time, free of the CLI's
start-up. Every run must end ``update_failed`` with the CLI exiting 1, else the run is an error.
"""

from __future__ import annotations

import time
from typing import Any

from bench.daemon_bench import DaemonStand
from bench.extras_repo import CRASH_SERVICE, ExtrasRepo

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


def render_timeline(events: list[dict[str, Any]], since: float) -> list[tuple[int, str]]:
    """(ms after ``since``, first line of the message) of each event, in order."""
    return [
        (round((float(e["ts"]) - since) * 1000), str(e["message"]).splitlines()[0] if e["message"] else "")
        for e in events
    ]
