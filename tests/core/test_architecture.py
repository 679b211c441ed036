"""The house rules that a reviewer would otherwise check by hand (CONTRIBUTING.md, "The map").

- no import circles between modules (imports under ``if TYPE_CHECKING:`` are types, not edges;
  an import inside a function is still an edge: it runs);
- the floors: ``blueprint`` imports nothing with side effects; ``cli`` reaches the engine only
  through the API; nothing below the engine imports it;
- no file in ``engine/`` is over ~350 lines;
- ``os.environ`` is read in ``settings.py`` only.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "slipstream"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> set[str]:
    """First-party modules ``path`` imports at run time."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_block(node):
            skip.update(id(n) for n in ast.walk(node))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("slipstream"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            if base.startswith("slipstream"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_circles() -> None:
    # a package's __init__ re-exporting its modules is not a circle of behaviour: drop those edges
    g = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph().items()}
    assert find_cycle(g) is None


@pytest.mark.parametrize(
    ("floor", "must_not_import"),
    [
        ("slipstream.blueprint", ("slipstream.engine", "slipstream.state", "slipstream.api", "slipstream.cli")),
        ("slipstream.state", ("slipstream.engine", "slipstream.api", "slipstream.cli")),
        ("slipstream.runtime", ("slipstream.engine", "slipstream.api", "slipstream.cli")),
        ("slipstream.proxy", ("slipstream.engine", "slipstream.api", "slipstream.cli")),
        ("slipstream.databases", ("slipstream.engine", "slipstream.api", "slipstream.cli")),
        ("slipstream.engine", ("slipstream.api", "slipstream.cli")),
        ("slipstream.cli", ("slipstream.engine", "slipstream.daemon.", "slipstream.api")),
    ],
)
def test_floors(floor: str, must_not_import: tuple[str, ...]) -> None:
    bad = {
        (m, i)
        for m, deps in graph().items()
        if m.startswith(floor)
        for i in deps
        if any(i.startswith(x) for x in must_not_import)
    }
    assert bad == set()


def test_engine_rooms_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PKG / "engine").glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > 360} == {}


def test_environment_is_read_in_settings_only() -> None:
    readers = {module_name(p) for p in PKG.rglob("*.py") if "os.environ" in p.read_text() and p.name != "settings.py"}
    # The one exception: 'slipstream status' starts without importing settings (its dataclasses,
    # inspect and pathlib imports cost more than all the rest of the fast path's). cli.fast derives the socket as settings does (tests/cli/test_fast.py
    # checks they agree) and calls load_settings whenever any other SLIPSTREAM_ variable is set.
    assert readers == {"slipstream.cli.fast"}


def test_the_daemon_loads_database_drivers_and_x509_only_when_used() -> None:
    """Importing the daemon must not load psycopg or cryptography's x509 (about 10 MB of RSS for a
    daemon whose services use no database and which serves no TCP listener), nor httpx (with rich
    and pygments for its CLI, another ~10 MB, for a daemon with no log drain or alert webhook)."""
    import subprocess
    import sys

    probe = "import sys, slipstream.daemon; print(sorted({'psycopg', 'cryptography.x509', 'httpx', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
