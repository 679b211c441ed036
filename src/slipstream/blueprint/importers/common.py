"""What every importer shares: the result, its notes, service names, and the YAML writer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from slipstream.blueprint.checks import DNS_LABEL, suggest_label
from slipstream.blueprint.problems import BlueprintError, Problem


@dataclass
class Imported:
    """render.yaml data and the notes for what has no equivalent."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def fail(source: str, line: int, column: int, message: str, hint: str | None = None) -> BlueprintError:
    """The error to raise for an input that cannot be read at all."""
    return BlueprintError([Problem(source, line, column, "", message, hint)])


class Names:
    """Service names handed out so far: each a DNS label, none twice."""

    def __init__(self, notes: list[str]) -> None:
        self.notes, self.taken = notes, set[str]()

    def label(self, name: str, what: str) -> str:
        """``name`` as a DNS label (with a note when it had to change)."""
        label = name if len(name) <= 63 and DNS_LABEL.fullmatch(name) else suggest_label(name)
        if label != name:
            self.notes.append(f"{what} '{name}' is not a valid service name; it was written as '{label}'")
        return label

    def claim(self, name: str, what: str) -> str:
        """A label for ``name`` that no earlier service has (a number appended if needed)."""
        label = self.label(name, what)
        chosen, n = label, 2
        while chosen in self.taken:
            chosen, n = f"{label[:60]}-{n}", n + 1
        if chosen != label:
            self.notes.append(f"{what} '{name}' would repeat the name '{label}'; it was written as '{chosen}'")
        self.taken.add(chosen)
        return chosen


def render_imported(imported: Imported, source: str) -> str:
    """Write the imported data as render.yaml text, notes first as comments."""
    lines = [
        f"# render.yaml written by 'slipstream import {source}'.",
        "# Review it, then run 'slipstream validate render.yaml'.",
    ]
    if imported.notes:
        lines.append("#")
        lines.append("# Not translated (no equivalent, or needs your decision):")
        for note in unique(imported.notes):
            lines.append("# - " + " ".join(note.split()))
    body = yaml.safe_dump(imported.document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body


def unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in their first order."""
    return list(dict.fromkeys(items))
