"""What a build is asked to do (``BuildSpec``), what it produced (``Build``), and how it fails."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slipstream.errors import CommandFailed
from slipstream.osusers import ServiceUser


@dataclass(frozen=True)
class BuildSpec:
    """One build of one service, from a git commit or a directory snapshot."""

    service: str
    build_id: int
    source_repo: Path | None  # git work tree holding the blueprint (None with from_dir)
    commit: str | None  # a sha or ref; None: the tip of `branch` if given, else HEAD
    branch: str | None
    from_dir: Path | None  # snapshot this directory instead of git (.git, .venv, node_modules left out)
    root_dir: str | None  # blueprint rootDir, relative to the repository root
    runtime: str  # "python" | "node" | "static" | anything else: just run the command
    build_command: str | None
    env: Mapping[str, str]  # the complete build environment
    user: ServiceUser | None = None  # the service's OS user: owns the tree, runs the build command


@dataclass(frozen=True)
class Build:
    """A finished build: an immutable source tree plus what its instances need at runtime."""

    build_id: int
    service: str
    commit: str | None  # resolved full sha (None for a directory snapshot)
    source_dir: Path  # builds_dir/<service>/<build_id>/src
    workdir: Path  # source_dir / rootDir
    path_prefix: tuple[str, ...]  # put first on PATH at runtime (the virtualenv's bin)
    extra_env: Mapping[str, str] = field(default_factory=dict)  # e.g. VIRTUAL_ENV
    log_path: Path = Path()
    duration_s: float = 0.0


class BuildFailed(CommandFailed):
    """Raised when the build command exits non-zero; ``log_tail`` holds its last output lines."""

    def __init__(self, message: str, log_tail: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.log_tail = log_tail
