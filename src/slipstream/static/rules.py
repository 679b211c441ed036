"""Pure translation of a static site's Render rules into anchored regular expressions.

Render's grammar (render.com/docs/redirects-rewrites and /docs/static-site-headers):

- route ``source``: a path; ``*`` matches any string from its position on (slashes included);
  a whole segment ``:name`` matches one path segment. ``destination`` reuses them: ``*`` is what
  the wildcard captured, ``:name`` is that segment.
- header ``path``: a glob; ``**`` crosses slashes, a trailing ``/*`` matches everything below,
  any other ``*`` stays inside one segment (``/*.css`` matches ``/a.css`` but not ``/x/a.css``).

The patterns use only syntax that Python's ``re`` and Go's RE2 (Caddy) read the same way, so the
tests check their meaning in Python and the integration tests check them in Caddy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from slipstream.errors import InvalidInput

WILDCARD_GROUP = "splat"  # the regex group holding what a source's ``*`` matched
PLACEHOLDER_PREFIX = "p_"  # groups for ``:name`` are ``p_name`` so none clashes with it
_REGEX_SPECIALS = set("\\.+*?()|[]{}^$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEST_PLACEHOLDER = re.compile(r"(?<=/):([A-Za-z_][A-Za-z0-9_]*)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)


class StaticRouteLike(Protocol):
    """A redirect or rewrite rule (``slipstream.blueprint.StaticRoute`` has this shape)."""

    @property
    def type(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str: ...


class HeaderLike(Protocol):
    """A response header rule (``slipstream.blueprint.Header`` has this shape)."""

    @property
    def path(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str: ...


@dataclass(frozen=True)
class SourcePattern:
    """A route source compiled to an anchored regex, with the names it captures."""

    regex: str
    wildcard: bool
    placeholders: tuple[str, ...]


def _literal(ch: str) -> str:
    return "\\" + ch if ch in _REGEX_SPECIALS else ch


def escape_braces(text: str) -> str:
    """Escape ``{`` and ``}`` so Caddy sends user text as-is instead of expanding placeholders."""
    return text.replace("{", "\\{").replace("}", "\\}")


def _check_path(text: str, where: str, what: str) -> None:
    if not text.startswith("/"):
        raise InvalidInput(
            f"{where}: {what} {text!r} must be a path starting with '/'", "write it like /blog/* (no scheme or host)"
        )
    if any(c in text for c in "?#\r\n\0"):
        raise InvalidInput(
            f"{where}: {what} {text!r} must be a plain path (no query, fragment or control characters)",
            "match on the path only",
        )


def build_header_regex(glob: str, where: str = "header") -> str:
    """Translate a Render header glob (``/*``, ``/blog/*``, ``/**/*``, ``/*.css``) to a regex."""
    _check_path(glob, where, "path")
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            trailing = i == len(glob) - 1 and glob[i - 1] == "/"
            out.append(".*" if trailing else "[^/]*")
            i += 1
        else:
            out.append(_literal(glob[i]))
            i += 1
    return "^" + "".join(out) + "$"


def build_source_regex(source: str, where: str = "route") -> SourcePattern:
    """Translate a Render route source (``/*``, ``/old/*``, ``/posts/:id``) to an anchored regex."""
    _check_path(source, where, "source")
    if source.count("*") > 1:
        raise InvalidInput(
            f"{where}: source {source!r} has more than one '*'",
            "use one wildcard, or :name placeholders for single segments",
        )
    out: list[str] = []
    names: list[str] = []
    for index, segment in enumerate(source.split("/")):
        if index:
            out.append("/")
        if segment.startswith(":"):
            name = segment[1:]
            if not _NAME.fullmatch(name):
                raise InvalidInput(
                    f"{where}: placeholder {segment!r} in {source!r} must be a "
                    "whole segment named with letters, digits and '_'",
                    "e.g. /posts/:postid",
                )
            if name in names:
                raise InvalidInput(
                    f"{where}: placeholder ':{name}' appears twice in {source!r}", "give each placeholder its own name"
                )
            names.append(name)
            out.append(f"(?P<{PLACEHOLDER_PREFIX}{name}>[^/]+)")
            continue
        for ch in segment:
            out.append(f"(?P<{WILDCARD_GROUP}>.*)" if ch == "*" else _literal(ch))
    return SourcePattern("^" + "".join(out) + "$", "*" in source, tuple(names))


def is_absolute_url(text: str) -> bool:
    """Whether ``text`` names another site (``https://…``, ``//host/…``), not a local path."""
    return bool(_SCHEME.match(text)) or text.startswith("//")


def build_destination(destination: str, pattern: SourcePattern, matcher: str, where: str = "route") -> str:
    """The destination for Caddy: ``*`` and ``:name`` become regex placeholders, braces escaped."""
    if "\r" in destination or "\n" in destination or "\0" in destination:
        raise InvalidInput(
            f"{where}: destination {destination!r} contains control characters", "write a single-line path or URL"
        )
    if "*" in destination and not pattern.wildcard:
        raise InvalidInput(
            f"{where}: destination {destination!r} uses '*' but the source has no wildcard",
            "add '*' to the source or remove it from the destination",
        )
    for name in _DEST_PLACEHOLDER.findall(destination):
        if name not in pattern.placeholders:
            raise InvalidInput(
                f"{where}: destination {destination!r} uses ':{name}' which the source does not define",
                f"add /:{name} to the source",
            )
    text = escape_braces(destination)
    text = text.replace("*", f"{{http.regexp.{matcher}.{WILDCARD_GROUP}}}")
    prefix = f"http.regexp.{matcher}.{PLACEHOLDER_PREFIX}"
    return _DEST_PLACEHOLDER.sub(lambda m: f"{{{prefix}{m.group(1)}}}", text)


def check_route(route: StaticRouteLike, where: str) -> None:
    """Raise InvalidInput unless ``route`` is a redirect or a same-site rewrite."""
    if route.type not in ("redirect", "rewrite"):
        raise InvalidInput(
            f"{where}: type {route.type!r} is not 'redirect' or 'rewrite'", "use type: redirect or type: rewrite"
        )
    dest = route.destination
    if route.type == "rewrite" and is_absolute_url(dest):
        raise InvalidInput(
            f"{where}: rewriting to another site ({dest}) is not supported: "
            "slipstream serves static files only and does not proxy",
            "use type: redirect, or serve that path from a web service",
        )
    if not (dest.startswith("/") or (route.type == "redirect" and re.match(r"^https?://", dest))):
        raise InvalidInput(
            f"{where}: destination {dest!r} must be a path starting with '/'"
            + (" or an http(s) URL" if route.type == "redirect" else ""),
            "e.g. destination: /index.html",
        )


def check_header(header: HeaderLike, where: str) -> None:
    """Raise InvalidInput unless ``header`` is a valid name and a single-line value."""
    if not _TOKEN.fullmatch(header.name):
        raise InvalidInput(
            f"{where}: {header.name!r} is not a valid header name", "use letters, digits and '-', e.g. Cache-Control"
        )
    if any(c in header.value for c in "\r\n\0"):
        raise InvalidInput(
            f"{where}: the value of {header.name} contains a line break or NUL", "write the value on one line"
        )
