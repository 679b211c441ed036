"""Fixtures for builds tests: a Builder under tmp_path and throwaway git repositories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from slipstream.builds import Builder, BuildSpec

BUILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; return stdout."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class Repo:
    """A throwaway git repository."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    def commit(self, files: dict[str, str], message: str = "change", delete: tuple[str, ...] = ()) -> str:
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        for name in delete:
            (self.path / name).unlink()
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


@pytest.fixture
def builder(tmp_path: Path) -> Builder:
    return Builder(tmp_path / "home" / "builds", tmp_path / "home" / "cache")


@pytest.fixture
def make_spec(repo: Repo) -> Callable[..., BuildSpec]:
    """A BuildSpec for ``repo`` with overridable fields."""
    counter = iter(range(1, 1000))

    def make(**kw: object) -> BuildSpec:
        fields: dict[str, object] = dict(
            service="api",
            build_id=next(counter),
            source_repo=repo.path,
            commit=None,
            branch=None,
            from_dir=None,
            root_dir=None,
            runtime="static",
            build_command=None,
            env=BUILD_ENV,
        )
        fields.update(kw)
        return BuildSpec(**fields)  # type: ignore[arg-type]

    return make
