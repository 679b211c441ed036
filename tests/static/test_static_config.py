"""Golden tests for the rendered Caddy JSON, the meaning of Render's patterns, and input errors."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from static_support import Hdr, Rule, load_golden, render_case

from slipstream.errors import InvalidInput
from slipstream.static import HEALTH_PATH, caddy_binary, render_caddy_config
from slipstream.static.rules import build_destination, build_header_regex, build_source_regex

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.caddytest"))


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden(path: Path) -> None:
    case, expected = load_golden(path)
    assert render_case(case) == json.loads(expected)


def test_golden_files_exist() -> None:
    assert {p.stem for p in GOLDEN} >= {"plain", "spa", "placeholders"}


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_config_is_valid_for_caddy(path: Path, tmp_path: Path) -> None:
    case, _ = load_golden(path)
    config = tmp_path / "caddy.json"
    config.write_text(json.dumps(render_case(case)))
    check = subprocess.run(
        [str(caddy_binary()), "validate", "--config", str(config)],
        env={"PORT": "18080", "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr


def test_config_is_quiet_local_and_health_checked() -> None:
    cfg = render_caddy_config(Path("/srv/site"), [], [], port_placeholder="9000")
    server = cfg["apps"]["http"]["servers"]["static"]
    assert cfg["admin"]["disabled"] is True and cfg["admin"]["config"]["persist"] is False
    assert cfg["logging"]["logs"]["default"]["level"] == "ERROR"
    assert server["listen"] == ["127.0.0.1:9000"]
    assert server["automatic_https"] == {"disable": True}
    assert server["routes"][0]["match"] == [{"path": [HEALTH_PATH]}]


def test_rendering_is_deterministic() -> None:
    rules = [Rule("rewrite", "/*", "/index.html")]
    headers = [Hdr("/*", "X-A", "1")]
    first = json.dumps(render_caddy_config(Path("/srv/x"), rules, headers))
    assert first == json.dumps(render_caddy_config(Path("/srv/x"), rules, headers))


def test_accepts_the_blueprint_models() -> None:
    from slipstream.blueprint import Header, StaticRoute

    cfg = render_caddy_config(
        Path("/srv/x"),
        [StaticRoute(type="rewrite", source="/*", destination="/index.html")],
        [Header(path="/*.css", name="Cache-Control", value="no-cache")],
    )
    assert cfg == render_caddy_config(
        Path("/srv/x"), [Rule("rewrite", "/*", "/index.html")], [Hdr("/*.css", "Cache-Control", "no-cache")]
    )


# Render's documented header globs (render.com/docs/static-site-headers), plus edges.
HEADER_GLOBS = [
    ("/*", "/", True),
    ("/*", "/index.html", True),
    ("/*", "/a/b/c.js", True),
    ("/blog/*", "/blog/", True),
    ("/blog/*", "/blog/latest-post/", True),
    ("/blog/*", "/blog/2024/01/post", True),
    ("/blog/*", "/blog", False),
    ("/blog/*", "/blogs/x", False),
    ("/**/*", "/blog/", True),
    ("/**/*", "/assets/", True),
    ("/**/*", "/a/b/c", True),
    ("/**/*", "/index.html", False),
    ("/*.css", "/tokens.css", True),
    ("/*.css", "/mode.css", True),
    ("/*.css", "/assets/theme.css", False),
    ("/*.css", "/tokens.cssx", False),
    ("/**/*.css", "/assets/theme.css", True),
    ("/**/*.css", "/a/b/theme.css", True),
    ("/**/*.css", "/tokens.css", False),
    ("/index.html", "/index.html", True),
    ("/index.html", "/indexxhtml", False),
]


@pytest.mark.parametrize(("glob", "path", "matches"), HEADER_GLOBS)
def test_header_glob_meaning(glob: str, path: str, matches: bool) -> None:
    assert bool(re.match(build_header_regex(glob), path)) is matches


SOURCES = [
    ("/*", "/app/settings", {"splat": "app/settings"}),
    ("/*", "/", {"splat": ""}),
    ("/old/*", "/old/a/b", {"splat": "a/b"}),
    ("/old/*", "/older", None),
    ("/home", "/home", {}),
    ("/home", "/home/", None),
    ("/blog/posts/:postid", "/blog/posts/my-post", {"p_postid": "my-post"}),
    ("/blog/posts/:postid", "/blog/posts/a/b", None),
    ("/updates/:month/:year", "/updates/03/2024", {"p_month": "03", "p_year": "2024"}),
    ("/v1.0/*", "/v1x0/a", None),
]


@pytest.mark.parametrize(("source", "path", "groups"), SOURCES)
def test_route_source_meaning(source: str, path: str, groups: dict[str, str] | None) -> None:
    m = re.match(build_source_regex(source).regex, path)
    assert (m.groupdict() if m else None) == groups


def test_destination_uses_captures_and_escapes_braces() -> None:
    pattern = build_source_regex("/updates/:month/:year/*")
    assert (
        build_destination("/c/:year/:month/*?v={x}", pattern, "route4")
        == "/c/{http.regexp.route4.p_year}/{http.regexp.route4.p_month}"
        "/{http.regexp.route4.splat}?v=\\{x\\}"
    )


BAD_ROUTES = [
    (Rule("proxy", "/*", "/index.html"), "type 'proxy' is not 'redirect' or 'rewrite'"),
    (Rule("rewrite", "/api/*", "https://api.example.com/*"), "is not supported"),
    (Rule("rewrite", "/api/*", "//api.example.com/*"), "is not supported"),
    (Rule("rewrite", "/*", "index.html"), "must be a path starting with '/'"),
    (Rule("redirect", "/*", "ftp://x/"), "or an http(s) URL"),
    (Rule("redirect", "blog", "/b"), "source 'blog' must be a path starting with '/'"),
    (Rule("redirect", "/a?x=1", "/b"), "no query"),
    (Rule("redirect", "/a/*/b/*", "/b/*"), "more than one '*'"),
    (Rule("redirect", "/a", "/b/*"), "uses '*' but the source has no wildcard"),
    (Rule("redirect", "/p/:id", "/q/:slug"), "uses ':slug' which the source does not define"),
    (Rule("redirect", "/p/:id.html", "/q"), "must be a whole segment"),
    (Rule("redirect", "/p/:id/:id", "/q/:id"), "appears twice"),
    (Rule("redirect", "/a", "/b\r\nSet-Cookie: x"), "control characters"),
]


@pytest.mark.parametrize(("rule", "message"), BAD_ROUTES, ids=[f"{r.source}->{r.destination}" for r, _ in BAD_ROUTES])
def test_bad_route_is_rejected_with_its_index(rule: Rule, message: str) -> None:
    ok = Rule("rewrite", "/x", "/y")
    with pytest.raises(InvalidInput) as err:
        render_caddy_config(Path("/srv/x"), [ok, rule], [])
    assert err.value.message.startswith("routes[1] (") and message in err.value.message
    assert err.value.hint


BAD_HEADERS = [
    (Hdr("*.css", "Cache-Control", "x"), "must be a path starting with '/'"),
    (Hdr("/*", "Bad Name", "x"), "is not a valid header name"),
    (Hdr("/*", "X-A", "a\r\nSet-Cookie: x"), "line break"),
]


@pytest.mark.parametrize(("header", "message"), BAD_HEADERS, ids=[h.name for h, _ in BAD_HEADERS])
def test_bad_header_is_rejected_with_its_index(header: Hdr, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        render_caddy_config(Path("/srv/x"), [], [Hdr("/*", "X-Ok", "1"), header])
    assert err.value.message.startswith("headers[1] (") and message in err.value.message


def test_relative_publish_dir_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="absolute"):
        render_caddy_config(Path("dist"), [], [])
