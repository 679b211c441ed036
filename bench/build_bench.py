"""Target 6 of issue 15: a Python build's ``pip install -r requirements.txt`` with pip and with uv.

Each run is a real build of ``examples/python-web`` (its requirements.txt: ``psycopg[binary]``)
through slipstream's Builder, ``buildCommand: pip install -r requirements.txt``, timed as the
build records it (source copy, virtualenv, the install). *Cold*: a new service, so an empty
download cache and a new virtualenv. *Warm*: the same service again with its virtualenvs removed,
so the cache holds the wheels and the virtualenv is new (as after a change of requirements). With
uv, the virtualenv's ``pip`` is the shim that runs ``uv pip install`` (builds/toolchain.py).
Downloads come from the package index, so cold runs depend on the network of the moment.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from slipstream.builds import Builder, BuildSpec
from slipstream.builds.toolchain import find_uv

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "python-web"
BUILD_COMMAND = "pip install -r requirements.txt"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


def _build(builder: Builder, service: str, build_id: int) -> float:
    spec = BuildSpec(
        service=service,
        build_id=build_id,
        source_repo=None,
        commit=None,
        branch=None,
        from_dir=APP,
        root_dir=None,
        runtime="python",
        build_command=BUILD_COMMAND,
        env=ENV,
    )
    return builder.build(spec).duration_s


def measure(work: Path, runs: int = 3) -> dict[str, Any]:
    """Median build seconds, cold and warm, with pip and with uv (``build.python_{cold,warm}_s[_pip|_uv]`` keys)."""
    uv = find_uv(sys.executable)
    out: dict[str, Any] = {"default": "uv" if uv else "pip"}
    for name, installer in (("pip", None), ("uv", uv)):
        if name == "uv" and installer is None:
            out["uv_skipped"] = "no uv binary beside the interpreter or on PATH ('make install' installs it)"
            continue
        builder = Builder(work / name / "builds", work / name / "cache", uv=installer)
        cold, warm = [], []
        for run in range(runs):
            service = f"{name}{run}"
            cold.append(_build(builder, service, 1))
            shutil.rmtree(builder.cache_dir / service / "venvs")
            warm.append(_build(builder, service, 2))
        out[f"python_cold_s_{name}"] = round(statistics.median(cold), 2)
        out[f"python_warm_s_{name}"] = round(statistics.median(warm), 2)
    # the default installer's numbers under the plain names (issue 15's report keys)
    out["python_cold_s"] = out[f"python_cold_s_{out['default']}"]
    out["python_warm_s"] = out[f"python_warm_s_{out['default']}"]
    return out


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ssbuild-") as tmp:
        print(json.dumps(measure(Path(tmp)), indent=2))
