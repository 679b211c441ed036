"""Fixtures for the static tests: publish dirs and real Caddy instances, always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from static_support import CaddySite, Hdr, Rule, SiteFactory


@pytest.fixture(scope="module")
def caddy_sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteFactory]:
    """Factory starting Caddy sites for a module; each is stopped (log shown) at the end."""
    started: list[CaddySite] = []
    home = tmp_path_factory.mktemp("home")

    def make(publish_dir: Path, routes: list[Rule], headers: list[Hdr]) -> CaddySite:
        site = CaddySite(tmp_path_factory.mktemp("instance"), publish_dir, routes, headers)
        started.append(site)
        site.start(home)
        return site

    try:
        yield make
    finally:
        for site in started:
            site.stop()
            print(f"--- {site.log_path}\n{site.log()}")  # shown by pytest when a test failed
