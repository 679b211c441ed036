"""Processes and probes for the bench: start and always stop what it starts, bounded polls.

Every child runs in its own session (process group), so a stop reaches its whole tree; every
wait has a deadline; every probe goes to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import psutil

UPSTREAM = Path(__file__).with_name("upstream.py")
ROOT = Path(__file__).resolve().parent.parent  # the repo: ``python -m bench.<module>`` children run here
T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: list[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def bench_child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``python -m bench.<module>`` child: ``base`` (this process's) with the
    repo's ``src`` first on PYTHONPATH, so the child imports the same slipstream as the bench."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    return env


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``proc``; SIGKILL it if it outlives ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def get(port: int, host: str = "localhost", path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    """One GET on a new connection to 127.0.0.1:``port``; (0, reason) when it fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, exc.__class__.__name__
    finally:
        conn.close()


def wait_for(check: Callable[[], T | None], timeout: float, interval: float = 0.005, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)


def upstream_env(port: int, app_id: str, base: Mapping[str, str], work_us: int = 0) -> dict[str, str]:
    """The environment of a bench upstream: PORT and APP_ID (and WORK_US) over a minimal base."""
    keep = {k: base[k] for k in ("PATH", "LANG", "LC_ALL", "HOME") if k in base}
    return {**keep, "PORT": str(port), "APP_ID": app_id, **({"WORK_US": str(work_us)} if work_us else {})}


def start_upstream(
    app_id: str, log_dir: Path, base_env: Mapping[str, str], work_us: int = 0
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the bench upstream answering ``ok <app_id>`` on a free port (spending ``work_us``
    microseconds of CPU per request); wait until it answers."""
    port = free_port()
    proc = spawn(
        [sys.executable, "-I", str(UPSTREAM)],
        log_dir / f"upstream-{app_id}.log",
        upstream_env(port, app_id, base_env, work_us),
    )
    try:
        wait_for(lambda: get(port)[0] == 200, 10, 0.01, f"upstream {app_id} on port {port}")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def time_boot(python: str, app: Path, base_env: Mapping[str, str], runs: int, log_dir: Path) -> list[float]:
    """Milliseconds from spawning ``python app`` to its first 200 (polled every 2 ms), ``runs`` times."""
    samples = []
    for i in range(runs):
        port = free_port()
        env = {**upstream_env(port, "boot", base_env)}
        env.pop("APP_ID")
        started = time.perf_counter()
        proc = spawn([python, str(app)], log_dir / "boot.log", env, cwd=app.parent)
        try:
            wait_for(lambda: get(port, timeout=1)[0] == 200, 10, 0.002, f"boot run {i}")
            samples.append((time.perf_counter() - started) * 1000)
        finally:
            stop(proc)
    return samples


def time_command(
    argv: list[str], runs: int, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> list[float]:
    """Milliseconds ``argv`` takes from spawn to exit, ``runs`` times."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            argv, cwd=cwd, env=dict(env) if env is not None else None, capture_output=True, timeout=60, check=False
        )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def processes_under(home: Path) -> list[psutil.Process]:
    """Processes whose command line or working directory lies under ``home`` (never this one)."""
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        except (psutil.Error, TypeError):
            continue
        if str(home) in text and p.pid != os.getpid():
            found.append(p)
    return found
