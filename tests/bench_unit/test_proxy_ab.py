"""The A/B harness's config variants: each one differs from slipstream's config and HAProxy accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.proxy_ab import VARIANTS, render_variant


@pytest.mark.real
def test_every_variant_renders_a_config_haproxy_accepts(tmp_path: Path) -> None:
    base = render_variant("base", tmp_path, 8080, 9001).read_text()
    for name in VARIANTS:
        cfg = render_variant(name, tmp_path, 8080, 9001)
        if name != "base":
            assert cfg.read_text() != base, f"variant {name} changed nothing"
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"
