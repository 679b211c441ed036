"""Fixtures for the log tests: a store in a temporary directory, always closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.logs.mask import LogMasker
from slipstream.logs.store import LogStore


@pytest.fixture
def masker() -> LogMasker:
    return LogMasker()


@pytest.fixture
def store(tmp_path: Path, masker: LogMasker) -> Iterator[LogStore]:
    s = LogStore(tmp_path / "logs.db", masker)
    try:
        yield s
    finally:
        s.close()
