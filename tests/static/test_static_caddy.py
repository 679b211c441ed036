"""The rendered config in the real Caddy: files, SPA fallback, redirects, headers, SIGTERM."""

from __future__ import annotations

import gzip
import http.client
import subprocess
from pathlib import Path

import pytest
from static_support import SPA_FILES, CaddySite, Hdr, Rule, SiteFactory, get, make_publish_dir

from slipstream.static import HEALTH_PATH

SPA_RULES = [
    Rule("redirect", "/old/*", "/new/*"),
    Rule("redirect", "/docs/:page", "https://docs.example.com/:page"),
    Rule("rewrite", "/p/:slug", "/pages/:slug.html"),
    Rule("rewrite", "/*", "/index.html"),
]
SPA_HEADERS = [
    Hdr("/*", "X-Frame-Options", "DENY"),
    Hdr("/*.css", "Cache-Control", "public, max-age=86400"),
    Hdr("/assets/*", "X-Asset", "yes {env.HOME}"),
]
INDEX = SPA_FILES["index.html"].encode()


@pytest.fixture(scope="module")
def spa(caddy_sites: SiteFactory, tmp_path_factory: pytest.TempPathFactory) -> CaddySite:
    return caddy_sites(make_publish_dir(tmp_path_factory.mktemp("spa"), SPA_FILES), SPA_RULES, SPA_HEADERS)


@pytest.fixture(scope="module")
def plain(caddy_sites: SiteFactory, tmp_path_factory: pytest.TempPathFactory) -> CaddySite:
    return caddy_sites(make_publish_dir(tmp_path_factory.mktemp("plain"), SPA_FILES), [], [])


def test_index_is_served(spa: CaddySite) -> None:
    resp = get(spa.port, "/")
    assert (resp.status, resp.body) == (200, INDEX)
    assert resp.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/app/settings", "/app/settings/", "/a/b/c?tab=2"])
def test_deep_link_gets_the_index_page(spa: CaddySite, path: str) -> None:
    resp = get(spa.port, path)
    assert (resp.status, resp.body) == (200, INDEX)


def test_real_file_is_served_as_itself_not_rewritten(spa: CaddySite) -> None:
    resp = get(spa.port, "/assets/app.js")
    assert (resp.status, resp.body) == (200, SPA_FILES["assets/app.js"].encode())
    assert "javascript" in resp.headers["content-type"]


def test_directory_index_is_a_resource_only_with_trailing_slash(spa: CaddySite) -> None:
    assert get(spa.port, "/blog/").body == SPA_FILES["blog/index.html"].encode()
    assert get(spa.port, "/blog").body == INDEX  # Render: /blog is not a resource, the rule applies


def test_redirect_answers_301_with_location(spa: CaddySite) -> None:
    resp = get(spa.port, "/old/a/b.html")
    assert (resp.status, resp.headers["location"]) == (301, "/new/a/b.html")
    resp = get(spa.port, "/docs/intro")
    assert (resp.status, resp.headers["location"]) == (301, "https://docs.example.com/intro")


def test_rewrite_with_a_placeholder_serves_the_destination_file(spa: CaddySite) -> None:
    resp = get(spa.port, "/p/about")
    assert (resp.status, resp.body) == (200, SPA_FILES["pages/about.html"].encode())


def test_existing_file_wins_over_a_matching_redirect(spa: CaddySite) -> None:
    resp = get(spa.port, "/old/keep.html")
    assert (resp.status, resp.body) == (200, SPA_FILES["old/keep.html"].encode())


def test_headers_apply_per_glob(spa: CaddySite) -> None:
    root_css = get(spa.port, "/style.css")
    nested_css = get(spa.port, "/assets/theme.css")
    page = get(spa.port, "/app/settings")
    assert root_css.headers.get("cache-control") == "public, max-age=86400"
    assert "cache-control" not in nested_css.headers  # /*.css is the root directory only
    assert "cache-control" not in page.headers
    assert {r.headers.get("x-frame-options") for r in (root_css, nested_css, page)} == {"DENY"}
    assert nested_css.headers.get("x-asset") == "yes {env.HOME}"  # sent as written, not expanded
    assert "x-asset" not in root_css.headers


def test_health_path_answers_200(spa: CaddySite) -> None:
    resp = get(spa.port, HEALTH_PATH)
    assert (resp.status, resp.body) == (200, b"ok\n")


def test_git_directory_is_never_served(spa: CaddySite) -> None:
    assert get(spa.port, "/.git/config").status == 404


def test_compresses_when_the_client_asks(spa: CaddySite) -> None:
    resp = get(spa.port, "/big.txt", {"Accept-Encoding": "gzip"})
    assert resp.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(resp.body) == SPA_FILES["big.txt"].encode()


def test_missing_file_without_rules_is_404(plain: CaddySite) -> None:
    assert get(plain.port, "/nope.html").status == 404
    assert get(plain.port, "/app/settings").status == 404
    assert get(plain.port, "/").body == INDEX
    assert get(plain.port, HEALTH_PATH).status == 200


def test_caddy_exits_on_sigterm_and_writes_nothing_to_home(tmp_path: Path) -> None:
    publish = make_publish_dir(tmp_path / "site", {"index.html": "hi\n"})
    home = tmp_path / "home"
    home.mkdir()
    site = CaddySite(tmp_path / "instance", publish, [], [])
    try:
        site.start(home)
        idle = http.client.HTTPConnection("127.0.0.1", site.port, timeout=5)
        idle.request("GET", "/")
        assert idle.getresponse().read() == b"hi\n"  # the connection stays open, idle
        assert site.proc is not None
        site.proc.terminate()
        try:
            # a bounded wait, well below Caddy's grace period: an idle client must not hold it
            code = site.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"caddy still running 5 s after SIGTERM:\n{site.log()}")
        idle.close()
        assert code == 0, site.log()
        assert list(home.iterdir()) == []
        assert (site.data_dir / "caddy").is_dir()
    finally:
        site.stop()
