"""Profiles for missed targets: where the daemon's memory goes, and what the daemon's CPU does.

``import_rss`` runs a fresh interpreter that imports the daemon's dependencies one by one and
reports the RSS each adds (the daemon's floor before it does any work). ``py_spy_top`` samples a
running process with py-spy when it is installed (``.venv/bin/pip install py-spy``; it is not a
project dependency) and returns the functions seen most often.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

HEAVY_IMPORTS = (
    "ssl",
    "pydantic",
    "fastapi",
    "uvicorn",
    "cryptography",
    "psycopg",
    "croniter",
    "yaml",
    "httpx",
    "prometheus_client",
)

_IMPORT_RSS = """\
import importlib, json, subprocess, sys, psutil
heavy = sys.argv[1:]
probe = "import sys, slipstream.daemon; print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
loaded = subprocess.run([sys.executable, "-c", probe, *heavy], capture_output=True, text=True).stdout.split()
p = psutil.Process()
rss = lambda: p.memory_info().rss / 2**20
out = [["interpreter", rss()]]
for name in [*loaded, "slipstream.daemon"]:
    before = rss()
    importlib.import_module(name)
    out.append([name if name in heavy else "slipstream.daemon with its other imports", rss() - before])
print(json.dumps(out))
"""


def import_rss(heavy: tuple[str, ...] = HEAVY_IMPORTS) -> list[tuple[str, float]]:
    """(module, MB of RSS its import added), in import order: the bare interpreter first, then each
    of ``heavy`` that importing ``slipstream.daemon`` loads, then the rest of the daemon's imports."""
    r = subprocess.run([sys.executable, "-c", _IMPORT_RSS, *heavy], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return []
    return [(name, float(mb)) for name, mb in json.loads(r.stdout)]


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter or on PATH, if any."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def parse_collapsed(text: str, top: int = 8) -> list[tuple[str, int]]:
    """The frames seen most often in py-spy's collapsed stacks: per sample, the innermost frame in
    slipstream's own code (the leaf when the stack has none)."""
    frames: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        ours = [f for f in parts if "slipstream/" in f]
        frames[(ours or parts)[-1]] += int(count)
    return frames.most_common(top)


def py_spy_top(pid: int, seconds: int, out_dir: Path) -> list[tuple[str, int]] | None:
    """Sample ``pid`` for ``seconds`` (active threads only); None without py-spy."""
    exe = py_spy()
    if exe is None:
        return None
    out = out_dir / f"py-spy-{pid}.txt"
    r = subprocess.run(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    if r.returncode != 0 or not out.exists():
        return None
    return parse_collapsed(out.read_text())
