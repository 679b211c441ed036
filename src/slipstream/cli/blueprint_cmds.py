"""CLI commands over the pure blueprint package: ``validate``, ``plan`` and ``import``.

``register(app)`` adds them to the main Typer app. They read local files only; ``plan`` asks the
optional ``current_state`` callable (the lead wires it to the daemon's API) for the snapshot to
compare with, and plans against an empty state without it. Errors go to stderr; exit 1 means the
blueprint (or the imported file) is invalid, 2 is a usage error (Typer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # the blueprint package (pydantic) is imported by the commands that use it
    from slipstream.blueprint import BlueprintError
    from slipstream.blueprint.model import Blueprint

RUNTIME_MARKERS = (
    ("requirements.txt", "python"),
    ("pyproject.toml", "python"),
    ("Pipfile", "python"),
    ("package.json", "node"),
    ("Gemfile", "ruby"),
    ("go.mod", "go"),
    ("Cargo.toml", "rust"),
    ("mix.exs", "elixir"),
)


def _summary(bp: Blueprint) -> str:
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    return (
        f"{n(len(bp.services), 'service')}, {n(len(bp.databases), 'database')}, "
        f"{n(len(bp.env_var_groups), 'env var group')}"
    )


def _print_errors(exc: BlueprintError) -> None:
    for w in exc.warnings:
        typer.echo(f"warning: {w}", err=True)
    for p in exc.problems:
        typer.echo(f"error: {p}", err=True)
    count = len(exc.problems)
    typer.echo(
        f"{exc.problems[0].file if exc.problems else 'blueprint'} is invalid: {count} error{'' if count == 1 else 's'}",
        err=True,
    )


def validate_file(file: Path, as_json: bool) -> int:
    """Validate ``file``, print the result, return the exit code (0 valid, 1 invalid)."""
    from slipstream.blueprint import BlueprintError, load_blueprint

    try:
        bp = load_blueprint(file)
    except BlueprintError as exc:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "file": str(file),
                        "valid": False,
                        "errors": [p.to_dict() for p in exc.problems],
                        "warnings": [p.to_dict() for p in exc.warnings],
                    },
                    indent=2,
                )
            )
        else:
            _print_errors(exc)
        return 1
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "file": str(file),
                    "valid": True,
                    "errors": [],
                    "warnings": [p.to_dict() for p in bp.warnings],
                    "services": [s.name for s in bp.services],
                    "databases": [d.name for d in bp.databases],
                    "envVarGroups": [g.name for g in bp.env_var_groups],
                },
                indent=2,
            )
        )
        return 0
    for w in bp.warnings:
        typer.echo(f"warning: {w}", err=True)
    warned = f" ({len(bp.warnings)} warning{'' if len(bp.warnings) == 1 else 's'})" if bp.warnings else ""
    typer.echo(f"{file} is valid: {_summary(bp)}{warned}")
    return 0


StateReader = Callable[[Path, str | None], Mapping[str, Any]]


def plan_file(
    file: Path,
    environment: str | None,
    as_json: bool,
    current_state: StateReader | None,
    project: str | None = None,
) -> int:
    """Print the plan for ``file`` against the current state; return the exit code."""
    from slipstream.blueprint import BlueprintError, load_blueprint
    from slipstream.blueprint.plan import plan_blueprint, render_plan

    try:
        bp = load_blueprint(file)
    except BlueprintError as exc:
        _print_errors(exc)
        return 1
    known = {e.name for e in bp.environments}
    if environment is not None and environment not in known:
        typer.echo(
            f"error: {file} has no environment named '{environment}'"
            + (f" (it has: {', '.join(sorted(known))})" if known else " (it declares no projects)"),
            err=True,
        )
        return 1
    current = current_state(file, project) if current_state is not None else {}
    plan = plan_blueprint(bp, current, environment=environment)
    if not as_json:
        for w in bp.warnings:
            typer.echo(f"warning: {w}", err=True)
    if as_json:
        typer.echo(json.dumps(plan.to_dict(), indent=2, default=str))
    else:
        typer.echo(render_plan(plan, title=f"Plan for {file}"), nl=False)
    return 1 if plan.conflicts else 0


def detect_runtime(directory: Path) -> str | None:
    """Guess a native runtime from the files next to a Procfile."""
    for marker, runtime in RUNTIME_MARKERS:
        if (directory / marker).exists():
            return runtime
    return None


def import_file(src: Path, output: str, name: str | None, runtime: str | None, force: bool) -> int:
    """Translate a fly.toml or Procfile into render.yaml; return the exit code."""
    from slipstream.blueprint import BlueprintError, parse_blueprint
    from slipstream.blueprint.importers import build_from_fly_toml, build_from_procfile, render_imported

    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read {src}: {exc}", err=True)
        return 1
    app_name = name or src.resolve().parent.name or "app"
    try:
        if src.name.lower().endswith(".toml"):
            imported = build_from_fly_toml(text, source=str(src), name=app_name)
        elif src.name.lower().startswith("procfile"):
            guessed = runtime or detect_runtime(src.resolve().parent)
            imported = build_from_procfile(text, name=app_name, runtime=guessed or "python", source=str(src))
            if guessed is None:
                imported.notes.insert(
                    0,
                    "runtime 'python' is a guess (no requirements.txt, package.json, "
                    "Gemfile, go.mod ... next to the Procfile)",
                )
        else:
            typer.echo(f"error: cannot tell what {src} is; name it fly.toml or Procfile", err=True)
            return 2
    except BlueprintError as exc:
        _print_errors(exc)
        return 1
    result = render_imported(imported, src.name)
    if output == "-":
        typer.echo(result, nl=False)
    else:
        target = Path(output)
        if target.exists() and not force:
            typer.echo(f"error: {target} already exists; pass --force to overwrite it or -o another path", err=True)
            return 1
        target.write_text(result, encoding="utf-8")
        typer.echo(
            f"wrote {target} ({len(imported.document['services'])} services, {len(imported.notes)} notes at the top)"
        )
    try:
        parse_blueprint(result, filename=output if output != "-" else "render.yaml")
    except BlueprintError as exc:
        typer.echo("the result needs edits before it is valid:", err=True)
        for p in exc.problems:
            typer.echo(f"error: {p}", err=True)
    return 0


def register(app: typer.Typer, current_state: StateReader | None = None) -> None:
    """Add ``validate``, ``plan`` and ``import`` to ``app``."""

    @app.command("validate")
    def validate(
        file: Path = typer.Argument(Path("render.yaml"), help="the blueprint to check"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ) -> None:
        """Check a render.yaml: every error with file:line:column, nothing changes."""
        raise typer.Exit(validate_file(file, as_json))

    @app.command("plan")
    def plan(
        file: Path = typer.Argument(Path("render.yaml"), help="the blueprint to plan"),
        env: str | None = typer.Option(None, "--env", help="only this environment"),
        project: str | None = typer.Option(
            None, "--project", help="plan against this project (default: the repo's directory name)"
        ),
        as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
    ) -> None:
        """Show what applying a render.yaml would create and update, and what it would keep (secrets masked)."""
        code = plan_file(file, env, as_json, current_state, project)
        raise typer.Exit(code)

    @app.command("import")
    def import_(
        src: Path = typer.Argument(..., help="a fly.toml or a Procfile"),
        output: str = typer.Option("render.yaml", "-o", "--output", help="where to write ('-' for stdout)"),
        name: str | None = typer.Option(None, "--name", help="service name (default: the directory name)"),
        runtime: str | None = typer.Option(None, "--runtime", help="runtime for a Procfile app"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
    ) -> None:
        """Write a render.yaml equivalent to a fly.toml or a Procfile."""
        raise typer.Exit(import_file(src, output, name, runtime, force))
