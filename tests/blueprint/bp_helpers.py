"""Shared helpers for blueprint tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.blueprint import BlueprintError, parse_blueprint
from tests.corpus import PUBLIC_BLUEPRINTS

REPO = Path(__file__).resolve().parents[2]
CORPUS = PUBLIC_BLUEPRINTS


def errors_of(text: str | bytes) -> BlueprintError:
    """Parse ``text`` and return the BlueprintError it must raise."""
    with pytest.raises(BlueprintError) as info:
        parse_blueprint(text)
    return info.value
