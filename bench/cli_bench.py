"""The CLI's start-up (issue 15, target 4): ``slipstream status`` as a person types it, against the
bench's running daemon with its 20 services, spawn to exit.

Both entry points are timed, interleaved: the console script (``.venv/bin/slipstream``, what people
run) and ``python -m slipstream``. The report keeps the console script's median as
``cli.status_ms_median`` (target <= 100 ms) and the other beside it. Each run must exit 0 and print
the table, so a command that fails fast cannot pass for a fast one.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RUNS = 21
TARGET_MS = 100.0


def entry_points() -> dict[str, list[str]]:
    """``script``: the console script beside this interpreter (``python -m`` when there is none)."""
    script = Path(sys.executable).with_name("slipstream")
    module = [sys.executable, "-m", "slipstream"]
    return {"script": [str(script)] if script.exists() else module, "module": module}


def _once(argv: list[str], env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([*argv, "status"], env=dict(env), capture_output=True, text=True, timeout=60, check=False)
    ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or "┃ project" not in done.stdout:
        raise RuntimeError(f"'slipstream status' failed ({done.returncode}): {done.stderr.strip()[:300]}")
    return ms


def measure(env: Mapping[str, str], services: int, runs: int = RUNS) -> dict[str, Any]:
    """``runs`` timed runs of each entry point (after one untimed run each to warm the page cache)."""
    argvs = entry_points()
    samples: dict[str, list[float]] = {name: [] for name in argvs}
    for argv in argvs.values():
        _once(argv, env)
    for _ in range(runs):
        for name, argv in argvs.items():
            samples[name].append(_once(argv, env))
    return {"services": services, "samples_ms": samples}


def summary(measured: dict[str, Any] | None) -> dict[str, Any]:
    """The report's ``cli`` keys (None values when it was not measured)."""
    if not measured:
        return dict.fromkeys(("status_ms_median", "status_python_m_ms_median", "status_ms_min", "runs", "services"))
    s = measured["samples_ms"]
    return {
        "status_ms_median": round(statistics.median(s["script"]), 1),
        "status_python_m_ms_median": round(statistics.median(s["module"]), 1),
        "status_ms_min": round(min(s["script"]), 1),
        "runs": len(s["script"]),
        "services": measured["services"],
    }


def row(report: dict[str, Any]) -> tuple[str, str, str]:
    """The line in the printed table."""
    c = report["cli"]
    if c["status_ms_median"] is None:
        return ("cli status", "skipped", report.get("skipped", {}).get("cli", "not measured"))
    return (
        "cli status",
        f"{c['status_ms_median']:.0f} ms",
        f"'slipstream status', spawn to exit, median of {c['runs']} ({c['services']} services); "
        f"python -m {c['status_python_m_ms_median']:.0f} ms",
    )


def target(report: dict[str, Any]) -> tuple[str, str, str, bool]:
    """(name, wanted, measured, met) of issue 15's target 4."""
    name, wanted, ms = "cli start-up", f"<= {TARGET_MS:.0f} ms, 'slipstream status'", report["cli"]["status_ms_median"]
    if ms is None:
        return (name, wanted, "not measured", False)
    return (name, wanted, f"{ms:.0f} ms", ms <= TARGET_MS)


def markdown(report: dict[str, Any]) -> list[str]:
    """The docs page's section."""
    c = report["cli"]
    if c["status_ms_median"] is None:
        return [f"Not measured: {report.get('skipped', {}).get('cli', 'no numbers')}."]
    return [
        f"`slipstream status` against the daemon with its {c['services']} services, spawn to exit, "
        f"{c['runs']} runs of each entry point interleaved: the console script {c['status_ms_median']:.0f} ms "
        f"median (fastest {c['status_ms_min']:.0f} ms), `python -m slipstream` "
        f"{c['status_python_m_ms_median']:.0f} ms (target <= {TARGET_MS:.0f} ms). The command imports only the "
        "standard library: it asks the API socket itself and draws Rich's table without Rich "
        "(`slipstream.cli.fast`); other commands still load Typer and Rich.",
    ]
