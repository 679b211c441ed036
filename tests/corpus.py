"""Where the public render.yaml files written by other people are (the shared workspace's
``blueprints/public``): beside the checkout, or at /work/shared for a clone made elsewhere."""

from __future__ import annotations

from pathlib import Path

_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared" / "blueprints" / "public",
    Path("/work/shared/blueprints/public"),
)
PUBLIC_BLUEPRINTS = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[-1])
