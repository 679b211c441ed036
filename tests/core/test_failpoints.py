"""Failpoints: every name is placed in the engine, an armed one kills its process, an unarmed one costs nothing."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream import failpoints
from slipstream.settings import SettingsError, load_settings

ENGINE = Path(failpoints.__file__).parent / "engine"


def placed_points() -> list[str]:
    """The points named by ``fp.hit(fp.NAME)`` calls in the engine's sources, one entry per call."""
    found = []
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "hit"
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Attribute)
            ):
                found.append(getattr(failpoints, node.args[0].attr))
    return found


def test_every_failpoint_is_placed_exactly_once_in_the_engine() -> None:
    placed = placed_points()
    assert sorted(placed) == sorted(failpoints.ALL)
    assert len(failpoints.ALL) >= 10 and len(set(failpoints.ALL)) == len(failpoints.ALL)


def run_hit(armed: str, point: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"from slipstream import failpoints as fp\nfp.arm(fp.parse({armed!r}))\nfp.hit({point!r})\nprint('survived')\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def test_an_armed_point_kills_the_process_with_sigkill() -> None:
    r = run_hit(f"{failpoints.AFTER_BUILD},{failpoints.DRAIN}", failpoints.DRAIN)
    assert r.returncode == -signal.SIGKILL
    assert "survived" not in r.stdout
    assert f"failpoint {failpoints.DRAIN}: kill -9 of daemon" in r.stderr


def test_an_unarmed_point_does_nothing() -> None:
    r = run_hit(failpoints.AFTER_BUILD, failpoints.DRAIN)
    assert r.returncode == 0 and r.stdout.strip() == "survived", r.stderr
    failpoints.hit(failpoints.DRAIN)  # nothing armed in the test process either


def test_settings_reject_an_unknown_failpoint_by_name() -> None:
    assert load_settings({"SLIPSTREAM_HOME": "/tmp/x"}).failpoints == ()
    s = load_settings({"SLIPSTREAM_HOME": "/tmp/x", "SLIPSTREAM_FAILPOINTS": "deploy.drain, deploy.settle"})
    assert s.failpoints == ("deploy.drain", "deploy.settle")
    with pytest.raises(SettingsError) as exc:
        load_settings({"SLIPSTREAM_HOME": "/tmp/x", "SLIPSTREAM_FAILPOINTS": "deploy.drian"})
    assert "SLIPSTREAM_FAILPOINTS has value 'deploy.drian': unknown failpoint deploy.drian" in str(exc.value)
