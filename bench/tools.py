"""What the bench needs on the machine (wrk, nginx, haproxy) and the facts it records about it."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from pathlib import Path

PACKAGES = {"wrk": "wrk", "nginx": "nginx", "haproxy": "haproxy"}


def missing_tools() -> list[str]:
    """Debian packages whose command is not on PATH."""
    return [pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None]


def ensure_tools() -> None:
    """Install missing packages with apt-get (as root); raise with the command to run otherwise."""
    need = missing_tools()
    if not need:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {', '.join(need)}: run 'sudo apt-get install -y {' '.join(need)}'")
    print(f"-----> Installing {' '.join(need)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need]
    if subprocess.run(install, env=env, capture_output=True, timeout=300).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=300)
        subprocess.run(install, env=env, check=True, capture_output=True, timeout=300)
    still = missing_tools()
    if still:
        raise RuntimeError(f"apt-get did not provide {', '.join(still)}")


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (r.stdout + r.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def parse_version(line: str) -> str:
    """The version word of a tool's banner ('HAProxy version 2.6.12-1 2023/..' -> '2.6.12-1')."""
    for word in line.replace("/", " ").split():
        if word[:1].isdigit() and "." in word:
            return word
    return line


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def unix_max_dgram_qlen() -> int | None:
    """The kernel's bound on a unix datagram socket's queue (``net.unix.max_dgram_qlen``): HAProxy's
    access lines wait there for the daemon, and a sender past it gets EAGAIN (HAProxy drops the line)."""
    try:
        return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        return None


def machine_info() -> dict[str, object]:
    """Cores, CPU, versions of Python/HAProxy/nginx/wrk, the date, the load at the start, and the
    unix datagram queue bound."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "haproxy": parse_version(_first_line(["haproxy", "-v"])),
        "nginx": parse_version(_first_line(["nginx", "-v"])),
        "wrk": parse_version(_first_line(["wrk", "-v"])),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "unix_max_dgram_qlen": unix_max_dgram_qlen(),
    }
