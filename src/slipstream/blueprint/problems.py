"""Problems found in a blueprint, and the one exception that carries them.

Every check appends a :class:`Problem` to a :class:`Collector` instead of raising, so a user sees
every mistake of a file at once. Paths are tuples such as ``("services", 2, "healthCheckPath")``;
the collector remembers where each path sits in the file (line and column of its key and of its
value) and a label for list items (the ``name`` or ``key`` they declare), so a problem renders as
``render.yaml:14:5: services[2] (api).healthCheckPath: must start with '/' (hint: ...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from slipstream.errors import SlipstreamError

Path = tuple[str | int, ...]
T = TypeVar("T")
MAX_SHOWN = 500


@dataclass(frozen=True)
class Problem:
    """One error or warning about a blueprint, pinned to a place in the file."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str | None = None

    def __post_init__(self) -> None:
        # User text (keys, names, values) ends up in these fields; keep each problem on one line.
        object.__setattr__(self, "path", printable(self.path))
        object.__setattr__(self, "message", printable(self.message))
        if self.hint is not None:
            object.__setattr__(self, "hint", printable(self.hint))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict."""
        return asdict(self)


def printable(text: str, limit: int = 400) -> str:
    """Escape line breaks and other unprintable characters, and cap the length."""
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii") for ch in text
        )
    return text if len(text) <= limit else text[: limit - 3] + "..."


class BlueprintError(SlipstreamError):
    """Raised when a blueprint is invalid; ``problems`` lists every error found, in file order."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or [])
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid blueprint")

    def __str__(self) -> str:
        return self.message


def format_path(path: Path, labels: dict[Path, str] | None = None) -> str:
    """Render ``("services", 2, "name")`` as ``services[2] (api).name`` using item labels."""
    out = ""
    for i, seg in enumerate(path):
        if isinstance(seg, int):
            out += f"[{seg}]"
            label = (labels or {}).get(path[: i + 1])
            if label:
                out += f" ({label})"
        else:
            out += ("." if out else "") + seg
    return out


@dataclass
class Collector:
    """Gathers errors and warnings for one file and knows where every path sits in it."""

    file: str
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    value_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    labels: dict[Path, str] = field(default_factory=dict)
    broken_names: set[str] = field(default_factory=set)
    kept_indices: dict[Path, list[int]] = field(default_factory=dict)

    def source_index(self, list_path: Path, i: int) -> int:
        """Map the index of a kept list item back to its index in the file."""
        kept = self.kept_indices.get(list_path)
        return kept[i] if kept is not None and i < len(kept) else i

    def items(self, list_path: Path, values: Sequence[T]) -> Iterator[tuple[Path, T]]:
        """Yield (path in the file, item) for the kept items of a list."""
        for i, value in enumerate(values):
            yield list_path + (self.source_index(list_path, i),), value

    def place(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Return (line, column) of ``path`` (its key or its value), else of its nearest ancestor."""
        marks = (self.key_marks, self.value_marks) if key else (self.value_marks, self.key_marks)
        p = path
        while True:
            for m in marks:
                if p in m:
                    return m[p]
            if not p:
                return (0, 0)
            p = p[:-1]

    def problem(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False, at: tuple[int, int] | None = None
    ) -> Problem:
        """Build a problem for ``path`` without recording it."""
        line, col = at if at is not None else self.place(path, key=key)
        return Problem(self.file, line, col, format_path(path, self.labels), message, hint)

    def error(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False, at: tuple[int, int] | None = None
    ) -> None:
        """Record an error at ``path``."""
        self.errors.append(self.problem(path, message, hint, key=key, at=at))

    def warn(
        self, path: Path, message: str, hint: str | None = None, *, key: bool = False, at: tuple[int, int] | None = None
    ) -> None:
        """Record a warning (accepted, but the user should know) at ``path``."""
        self.warnings.append(self.problem(path, message, hint, key=key, at=at))

    def fail(self) -> BlueprintError:
        """Return the error to raise, errors sorted by their place in the file (at most MAX_SHOWN)."""
        errors = sorted_problems(self.errors)
        if len(errors) > MAX_SHOWN:
            more = Problem(
                self.file,
                errors[MAX_SHOWN].line,
                errors[MAX_SHOWN].column,
                "",
                f"... and {len(errors) - MAX_SHOWN} more problems",
                "fix the ones above first",
            )
            errors = errors[:MAX_SHOWN] + [more]
        return BlueprintError(errors, sorted_problems(self.warnings)[:MAX_SHOWN])


def sorted_problems(problems: list[Problem]) -> list[Problem]:
    """Sort problems by line and column, keeping the order of equal places; drop exact repeats."""
    seen: set[Problem] = set()
    unique = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return sorted(unique, key=lambda p: (p.line, p.column))
