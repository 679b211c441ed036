"""Which native runtime an app needs: from the programs its commands start, then from its files."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Collection

DEFAULT_RUNTIME = "python"
BUILD_COMMANDS = {
    "python": "pip install -r requirements.txt",
    "node": "npm install",
    "ruby": "bundle install",
    "go": "go build -o app .",
    "rust": "cargo build --release",
    "elixir": "mix deps.get && mix compile",
}
# A lock file next to the input picks the package manager's own install command.
LOCKFILE_BUILDS = (
    ("yarn.lock", "node", "yarn install --frozen-lockfile"),
    ("pnpm-lock.yaml", "node", "pnpm install --frozen-lockfile"),
    ("bun.lock", "node", "bun install"),
    ("bun.lockb", "node", "bun install"),
    ("uv.lock", "python", "uv sync --frozen"),
    ("poetry.lock", "python", "poetry install"),
)
# Files that say which language an app is written in, in order of precedence.
RUNTIME_FILES = (
    ("requirements.txt", "python"),
    ("pyproject.toml", "python"),
    ("Pipfile", "python"),
    ("package.json", "node"),
    ("Gemfile", "ruby"),
    ("go.mod", "go"),
    ("Cargo.toml", "rust"),
    ("mix.exs", "elixir"),
)
# The program a command starts -> the native runtime it needs (bun runs in Render's node runtime).
COMMAND_RUNTIMES = {
    **dict.fromkeys(
        ("node", "npm", "npx", "yarn", "pnpm", "bun", "next", "nuxt", "nodemon", "pm2", "pm2-runtime", "tsx"), "node"
    ),
    **dict.fromkeys(
        (
            "python",
            "python3",
            "gunicorn",
            "uvicorn",
            "hypercorn",
            "daphne",
            "celery",
            "flask",
            "django-admin",
            "waitress-serve",
            "rq",
            "dramatiq",
            "streamlit",
            "pipenv",
            "poetry",
            "uv",
        ),
        "python",
    ),
    **dict.fromkeys(("bundle", "rails", "puma", "rake", "ruby", "sidekiq", "unicorn", "rackup", "thin"), "ruby"),
    "go": "go",
    "cargo": "rust",
    **dict.fromkeys(("mix", "elixir", "iex"), "elixir"),
}
SCRIPT_RUNTIMES = {".py": "python", ".rb": "ruby", ".js": "node", ".mjs": "node", ".cjs": "node", ".ts": "node"}
_WRAPPERS = {"exec", "nohup", "time", "env", "command"}


def runtime_of_command(command: str) -> str | None:
    """The native runtime a shell command needs, judged by the programs it starts; None if unclear."""
    for segment in re.split(r"&&|\|\||;|\|", command):
        try:
            words = shlex.split(segment)
        except ValueError:
            words = segment.split()
        while words and ("=" in words[0] and not words[0].startswith("=") or words[0] in _WRAPPERS):
            words = words[1:]  # VAR=value assignments and exec/env/nohup wrappers
        if not words or words[0] == "cd":
            continue
        if words[0] in ("sh", "bash") and len(words) > 2 and words[1] == "-c":
            inner = runtime_of_command(words[2])
            if inner:
                return inner
            continue
        program = words[0].rsplit("/", 1)[-1]
        found = (
            COMMAND_RUNTIMES.get(program)
            or COMMAND_RUNTIMES.get(re.sub(r"[0-9.]+$", "", program))  # python3.12, node18
            or SCRIPT_RUNTIMES.get(program[program.rfind(".") :] if "." in program else "")
        )
        if found:
            return found
    return None


def runtime_of_files(files: Collection[str]) -> str | None:
    """The native runtime the files of an app's directory point to, or None."""
    return next((runtime for marker, runtime in RUNTIME_FILES if marker in files), None)


def build_command(runtime: str, files: Collection[str]) -> str | None:
    """The usual build command of ``runtime``, following the lock file in ``files`` if there is one."""
    for lock, lock_runtime, command in LOCKFILE_BUILDS:
        if lock_runtime == runtime and lock in files:
            return command
    return BUILD_COMMANDS.get(runtime)


def pick_runtimes(
    commands: dict[str, str], asked: str | None, files: Collection[str], notes: list[str]
) -> dict[str, str]:
    """A runtime per process: its command's, else the one asked for, else the commands' most common
    one, else the files', else python (with a note saying it is a guess)."""
    by_command = {proc: rt for proc, cmd in commands.items() if (rt := runtime_of_command(cmd))}
    common = Counter(by_command.values()).most_common(1)
    default = asked or (common[0][0] if common else None) or runtime_of_files(files)
    if default is None:
        default = DEFAULT_RUNTIME
        notes.append(
            f"runtime '{DEFAULT_RUNTIME}' is a guess: neither the commands nor the files "
            "(requirements.txt, package.json, Gemfile, go.mod, ...) tell; change it if it is wrong"
        )
    for proc, rt in by_command.items():
        if asked and rt != asked:
            notes.append(f"'{proc}' runs '{commands[proc][:50]}', so its runtime is {rt}, not {asked}")
    return {proc: by_command.get(proc, default) for proc in commands}
