"""Golden files: ``golden/*.txt`` hold an input blueprint, then sections after separator lines.

    <render.yaml text>
    ---------- current        (optional: JSON snapshot for a plan)
    ---------- options        (optional: JSON, e.g. {"environment": "prod"})
    ---------- errors | warnings | plan
    <expected output>

Run ``python tests/blueprint/test_golden.py`` to rewrite the expected sections after a deliberate
change, then review the diff.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from slipstream.blueprint import BlueprintError, parse_blueprint
from slipstream.blueprint.plan import plan_blueprint, render_plan

GOLDEN = Path(__file__).parent / "golden"
SEPARATOR = re.compile(r"^-{10} (current|options|errors|warnings|plan)$", re.MULTILINE)


def read_golden(path: Path) -> tuple[str, dict[str, str]]:
    """Split a golden file into its input and its named sections."""
    parts = SEPARATOR.split(path.read_text())
    sections = {parts[i]: parts[i + 1].lstrip("\n") for i in range(1, len(parts), 2)}
    return parts[0], sections


def actual_output(text: str, sections: dict[str, str], filename: str) -> tuple[str, str]:
    """Return (section name, what the code produces) for a golden input."""
    try:
        bp = parse_blueprint(text, filename=filename)
    except BlueprintError as exc:
        return "errors", str(exc) + "\n"
    if "plan" in sections:
        current = json.loads(sections.get("current") or "{}")
        options = json.loads(sections.get("options") or "{}")
        return "plan", render_plan(plan_blueprint(bp, current, **options))
    return "warnings", "".join(f"{w}\n" for w in bp.warnings)


FILES = sorted(GOLDEN.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden(path: Path) -> None:
    text, sections = read_golden(path)
    kind, got = actual_output(text, sections, "render.yaml")
    assert kind in sections, f"{path.name}: produced {kind}:\n{got}"
    assert got == sections[kind]


def test_there_are_golden_files_of_each_kind() -> None:
    kinds = {p.stem.split("_")[0] for p in FILES}
    assert {"error", "plan", "warnings"} <= kinds


if __name__ == "__main__":  # rewrite expected sections
    for path in FILES if len(sys.argv) < 2 else [Path(a) for a in sys.argv[1:]]:
        text, sections = read_golden(path)
        kind, got = actual_output(text, sections, "render.yaml")
        out = text
        for name in ("current", "options"):
            if name in sections:
                out += f"---------- {name}\n{sections[name]}"
        path.write_text(out + f"---------- {kind}\n{got}")
        print(f"{path.name}: {kind}")
