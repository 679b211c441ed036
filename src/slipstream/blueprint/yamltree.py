"""Bytes or text in, a small tree of located YAML values out (or problems).

Lifecycle of a document:
1. decode: bytes must be UTF-8 (a BOM is allowed); the size is capped.
2. compose: PyYAML composes one node graph (no Python objects are constructed, so no tag can
   run code); nesting deeper than ``MAX_DEPTH`` stops the composer before Python's stack does.
3. build: the graph becomes :class:`YMap` / :class:`YSeq` / :class:`YScalar`, each with its
   1-based line and column. Aliases are expanded under a node budget (a "billion laughs"
   document or an alias cycle stops with a problem), ``<<`` merge keys are applied, duplicate
   keys and non-scalar keys are reported.
Every failure becomes a problem in the :class:`Collector`; nothing here raises to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from yaml.composer import Composer, ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from slipstream.blueprint.problems import Collector, Path

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

STR = "tag:yaml.org,2002:str"
NULL = "tag:yaml.org,2002:null"
BOOL = "tag:yaml.org,2002:bool"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
MERGE = "tag:yaml.org,2002:merge"
SEQ = "tag:yaml.org,2002:seq"
MAP = "tag:yaml.org,2002:map"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
SCALAR_TAGS = {STR, NULL, BOOL, INT, FLOAT, TIMESTAMP}


@dataclass(slots=True)
class YScalar:
    """A scalar: its source text, resolved tag and whether it was quoted."""

    line: int
    column: int
    text: str
    tag: str
    quoted: bool

    @property
    def is_null(self) -> bool:
        """True for ``~``, ``null`` and an empty value."""
        return self.tag == NULL


@dataclass(slots=True)
class YSeq:
    """A sequence of nodes."""

    line: int
    column: int
    items: list[YNode] = field(default_factory=list)


@dataclass(slots=True)
class YMap:
    """A mapping with string keys in file order; each entry keeps its key's place."""

    line: int
    column: int
    entries: list[tuple[str, tuple[int, int], YNode]] = field(default_factory=list)

    def get(self, key: str) -> YNode | None:
        """Return the value node for ``key``, or None."""
        for k, _, v in self.entries:
            if k == key:
                return v
        return None

    def keys(self) -> list[str]:
        """Return the keys in file order."""
        return [k for k, _, _ in self.entries]

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _, _ in self.entries)


YNode = YScalar | YSeq | YMap


def kind_of(node: YNode | None) -> str:
    """Name the kind of a node for messages: 'a mapping', 'a list', 'a string', ..."""
    if node is None:
        return "nothing"
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    return {NULL: "empty", BOOL: "a boolean", INT: "a number", FLOAT: "a number"}.get(node.tag, "a string")


class _DepthLimit:
    """Composer mixin that refuses to nest deeper than MAX_DEPTH (before Python's stack does)."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        """Compose one node, counting how deep the document nests."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]  # the mixed-in Parser has it
                raise ComposerError(None, None, f"nesting is deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)  # type: ignore[misc,no-any-return]  # untyped mixin
        finally:
            self._depth -= 1


class _PyLoader(_DepthLimit, Reader, Scanner, Parser, Composer, Resolver):
    """Pure-Python events and composer; used when PyYAML was built without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        Resolver.__init__(self)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_DepthLimit, Composer, CParser, Resolver):
        """libyaml scans and parses (about 15x faster); the Python composer builds the nodes."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)

    _Loader: type = _CLoader
else:  # pragma: no cover - PyYAML wheels ship libyaml
    _Loader = _PyLoader


class _TooBig(Exception):
    """Internal: alias expansion exceeded the budget or the depth limit."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line, self.column = line, column


def decode(data: bytes | str, out: Collector) -> str | None:
    """Return the text of ``data`` or record why it cannot be read."""
    if isinstance(data, str):
        text = data
        if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            out.error(
                (),
                f"file is larger than {MAX_BYTES // 1024} KiB",
                "a blueprint this large is almost certainly not a render.yaml; check the file name",
            )
            return None
    else:
        if len(data) > MAX_BYTES:
            out.error(
                (),
                f"file is larger than {MAX_BYTES // 1024} KiB",
                "a blueprint this large is almost certainly not a render.yaml; check the file name",
            )
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            out.error(
                (),
                f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} cannot be decoded)",
                "save the file as UTF-8",
                at=(line, col),
            )
            return None
    if text.startswith("\ufeff"):
        text = text[1:]
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            line = text.count("\n", 0, i) + 1
            col = i - (text.rfind("\n", 0, i) + 1) + 1
            out.error((), "file contains an unpaired surrogate character", "save the file as UTF-8", at=(line, col))
            return None
    return text


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def compose(text: str, out: Collector) -> Node | None:
    """Compose one YAML document into a node graph, or record the syntax error."""
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_node()  # type: ignore[no-any-return]  # PyYAML stubs return Any
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc.context or ""):
            what = "the file holds more than one YAML document"
        elif exc.context and exc.context_mark and exc.problem and exc.context_mark != mark:
            start = exc.context_mark
            what = f"{exc.problem} {exc.context} that starts on line {start.line + 1}, column {start.column + 1}"
        out.error((), f"invalid YAML: {what}", _yaml_hint(what, _char_at(text, at)), at=at)
    except yaml.reader.ReaderError as exc:
        index = exc.position
        if _Loader is not _PyLoader:  # libyaml reports a byte offset into the UTF-8 text
            index = len(text.encode("utf-8")[: exc.position].decode("utf-8", "ignore"))
        at = _position(text, index)
        out.error(
            (),
            f"invalid YAML: character U+{exc.character:04X} is not allowed",
            "remove control characters from the file",
            at=at,
        )
    except yaml.YAMLError as exc:
        out.error((), f"invalid YAML: {exc}")
    finally:
        if loader is not None:
            loader.dispose()
    return None


def _char_at(text: str, at: tuple[int, int]) -> str:
    lines = text.split("\n")
    line, col = at
    if 1 <= line <= len(lines) and 1 <= col <= len(lines[line - 1]):
        return lines[line - 1][col - 1]
    return ""


def _yaml_hint(what: str, char: str = "") -> str | None:
    if char == "\t" or r"\t" in what or "tab" in what:
        return "indent with spaces, not tabs"
    if "more than one YAML document" in what:
        return "keep one document per file (remove the extra '---')"
    if "mapping values are not allowed" in what:
        return "quote values that contain ': ' or fix the indentation"
    if "deeper than" in what:
        return "a render.yaml never nests this deep; check the indentation"
    if "quoted scalar" in what:
        return "a quote is not closed"
    return None


def build(node: Node, out: Collector) -> YNode | None:
    """Turn a composed graph into a located tree; record duplicate keys and budget overruns."""
    budget = [MAX_NODES]
    try:
        return _build(node, (), budget, out)
    except _TooBig as exc:
        out.error((), str(exc), "expand aliases by hand or remove the alias cycle", at=(exc.line, exc.column))
        return None


def _build(node: Node, path: Path, budget: list[int], out: Collector) -> YNode:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(f"document expands to more than {MAX_NODES} values through aliases", line, col)
    if len(path) > MAX_DEPTH:
        raise _TooBig(f"aliases nest deeper than {MAX_DEPTH} levels (an alias cycle?)", line, col)
    out.value_marks.setdefault(path, (line, col))
    if isinstance(node, ScalarNode):
        return YScalar(line, col, str(node.value), str(node.tag), node.style not in (None, ""))
    if node.tag not in (SEQ, MAP) and not isinstance(node, ScalarNode):
        out.error(path, f"unsupported YAML tag '{node.tag}'", "remove the tag; plain values are enough", at=(line, col))
    if isinstance(node, SequenceNode):
        return YSeq(line, col, [_build(item, path + (i,), budget, out) for i, item in enumerate(node.value)])
    assert isinstance(node, MappingNode)
    if path and isinstance(path[-1], int):
        label = _label(node)
        if label:
            out.labels[path] = label
    result = YMap(line, col)
    seen: dict[str, int] = {}
    merged: list[YMap] = []
    for key_node, value_node in node.value:
        kline, kcol = key_node.start_mark.line + 1, key_node.start_mark.column + 1
        if isinstance(key_node, ScalarNode) and key_node.tag == MERGE:
            merged.extend(_merge_sources(value_node, path, budget, out, (kline, kcol)))
            continue
        if not isinstance(key_node, ScalarNode):
            out.error(
                path,
                "mapping keys must be plain strings, not a list or mapping",
                "remove the '?' complex key",
                at=(kline, kcol),
            )
            continue
        key = str(key_node.value)
        if key in seen:
            out.error(
                path + (key,),
                f"duplicate key '{key}' (first used on line {seen[key]})",
                "a key may appear once per mapping; remove or rename one of them",
                at=(kline, kcol),
            )
            continue
        seen[key] = kline
        out.key_marks.setdefault(path + (key,), (kline, kcol))
        result.entries.append((key, (kline, kcol), _build(value_node, path + (key,), budget, out)))
    for source in merged:
        for key, mark, value in source.entries:
            if key not in seen:
                seen[key] = mark[0]
                out.key_marks.setdefault(path + (key,), mark)
                result.entries.append((key, mark, _rebase(value, path + (key,), out)))
    return result


def _label(node: MappingNode) -> str | None:
    for key_node, value_node in node.value:
        if (
            isinstance(key_node, ScalarNode)
            and key_node.value in ("name", "key")
            and isinstance(value_node, ScalarNode)
            and value_node.value
        ):
            return str(value_node.value)[:80]
    return None


def _rebase(node: YNode, path: Path, out: Collector) -> YNode:
    """Record the marks of a merged-in value under the path it now has."""
    stack: list[tuple[YNode, Path]] = [(node, path)]
    while stack:
        n, p = stack.pop()
        out.value_marks.setdefault(p, (n.line, n.column))
        if isinstance(n, YSeq):
            stack.extend((item, p + (i,)) for i, item in enumerate(n.items))
        elif isinstance(n, YMap):
            for k, mark, v in n.entries:
                out.key_marks.setdefault(p + (k,), mark)
                stack.append((v, p + (k,)))
    return node


def _merge_sources(node: Node, path: Path, budget: list[int], out: Collector, at: tuple[int, int]) -> list[YMap]:
    built = _build(node, path + ("<<",), budget, out)
    items = built.items if isinstance(built, YSeq) else [built]
    maps = [m for m in items if isinstance(m, YMap)]
    if len(maps) != len(items):
        out.error(
            path,
            "'<<' must merge a mapping or a list of mappings",
            "point '<<' at an anchored mapping, e.g. '<<: *defaults'",
            at=at,
        )
    return maps


def load_tree(data: bytes | str, out: Collector) -> YNode | None:
    """Decode, compose and build ``data``; None (with problems recorded) when it cannot be read."""
    text = decode(data, out)
    if text is None:
        return None
    node = compose(text, out)
    if node is None:
        if not out.errors:
            out.error((), "file is empty", "declare at least one of services:, databases:, envVarGroups:", at=(1, 1))
        return None
    return build(node, out)
