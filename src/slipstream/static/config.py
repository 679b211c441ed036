"""Pure rendering of the Caddy JSON config that serves one static-site release.

Routes, in order (Caddy runs every matching route until a terminal one answers):

1. ``HEALTH_PATH`` answers 200 for the engine's health check (terminal).
2. ``encode``: gzip/zstd for clients that ask.
3. one ``headers`` route per header rule, matched on the path the client asked for.
4. files win: a file at exactly the requested path (or ``index.html`` under a path ending in
   ``/``) is served as itself, before any rule, as Render does.
5. one route per redirect/rewrite rule, top to bottom, the first match answers (terminal):
   redirect = 301 with ``Location``; rewrite = serve the destination's file.
6. the plain file server: everything else, so a missing file is a 404.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slipstream.errors import InvalidInput
from slipstream.static.rules import (
    HeaderLike,
    StaticRouteLike,
    build_destination,
    build_header_regex,
    build_source_regex,
    check_header,
    check_route,
    escape_braces,
)

HEALTH_PATH = "/__slipstream/health"
REDIRECT_STATUS = 301  # Render's redirects are always 301 Moved Permanently
GRACE_PERIOD = "10s"  # on SIGTERM, in-flight requests get this long (runtime kills later)
HIDDEN = [".git"]  # never served even when the publish dir is a checkout

JSON = dict[str, Any]


def _file_server(root: str) -> JSON:
    # Caddy's canonical-URI redirects (/dir -> /dir/) stay on: Caddy skips them when a rewrite
    # changed the file name (caddy#4205), so a rewrite to /index.html never redirects or loops.
    return {"handler": "file_server", "root": root, "hide": list(HIDDEN), "index_names": ["index.html"]}


def _file_exists(root: str) -> list[JSON]:
    # Two matcher sets (either may match): a regular file at the path itself, or, for a path
    # ending in '/', that directory's index.html. A bare directory is not a resource.
    path = "{http.request.uri.path}"
    return [
        {"file": {"root": root, "try_files": [path]}, "not": [{"path": ["*/"]}]},
        {"file": {"root": root, "try_files": [path + "index.html"]}, "path": ["*/"]},
    ]


def _header_routes(headers: Sequence[HeaderLike]) -> list[JSON]:
    routes = []
    for i, header in enumerate(headers):
        where = f"headers[{i}] ({header.path} {header.name})"
        check_header(header, where)
        routes.append(
            {
                "match": [{"path_regexp": {"pattern": build_header_regex(header.path, where)}}],
                "handle": [{"handler": "headers", "response": {"set": {header.name: [escape_braces(header.value)]}}}],
            }
        )
    return routes


def _rule_routes(rules: Sequence[StaticRouteLike], root: str) -> list[JSON]:
    routes = []
    for i, rule in enumerate(rules):
        where = f"routes[{i}] ({rule.type} {rule.source} -> {rule.destination})"
        check_route(rule, where)
        matcher = f"route{i}"
        pattern = build_source_regex(rule.source, where)
        target = build_destination(rule.destination, pattern, matcher, where)
        handle: list[JSON]
        if rule.type == "redirect":
            handle = [{"handler": "static_response", "status_code": REDIRECT_STATUS, "headers": {"Location": [target]}}]
        else:
            handle = [{"handler": "rewrite", "uri": target}, _file_server(root)]
        routes.append(
            {
                "match": [{"path_regexp": {"name": matcher, "pattern": pattern.regex}}],
                "handle": handle,
                "terminal": True,
            }
        )
    return routes


def render_caddy_config(
    publish_dir: Path,
    routes: Sequence[StaticRouteLike],
    headers: Sequence[HeaderLike],
    *,
    port_placeholder: str = "{env.PORT}",
) -> JSON:
    """The Caddy JSON config serving ``publish_dir`` on 127.0.0.1:PORT with the site's rules."""
    if not publish_dir.is_absolute():
        raise InvalidInput(
            f"publish directory {publish_dir} must be an absolute path",
            "resolve it with static.resolve_publish_dir first",
        )
    root = escape_braces(str(publish_dir))
    server: JSON = {
        "listen": [f"127.0.0.1:{port_placeholder}"],
        "automatic_https": {"disable": True},
        "protocols": ["h1"],
        "routes": [
            {
                "match": [{"path": [HEALTH_PATH]}],
                "handle": [{"handler": "static_response", "status_code": 200, "body": "ok\n"}],
                "terminal": True,
            },
            {"handle": [{"handler": "encode", "encodings": {"zstd": {}, "gzip": {}}, "prefer": ["zstd", "gzip"]}]},
            *_header_routes(headers),
            {"match": _file_exists(root), "handle": [_file_server(root)], "terminal": True},
            *_rule_routes(routes, root),
            {"handle": [_file_server(root)]},
        ],
    }
    return {
        "admin": {"disabled": True, "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "apps": {"http": {"grace_period": GRACE_PERIOD, "servers": {"static": server}}},
    }
