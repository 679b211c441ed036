"""Materialise a build's source: a git commit (``git archive``) or a directory snapshot.

The user's work tree is only ever read: a commit is exported from the object store, so local
edits, untracked files and the checked-out branch play no part.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from slipstream.errors import CommandFailed, InvalidInput, NotFound
from slipstream.runner import run

SNAPSHOT_EXCLUDES = frozenset({".git", ".venv", "node_modules"})


def parse_root_dir(root_dir: str | None) -> PurePosixPath:
    """Check a blueprint rootDir: relative, inside the repository; '' or None means the root."""
    if root_dir is None or root_dir.strip() in ("", "."):
        return PurePosixPath(".")
    path = PurePosixPath(root_dir.strip())
    if "\0" in root_dir or path.is_absolute() or ".." in path.parts:
        raise InvalidInput(
            f"rootDir '{root_dir}' must be a relative path inside the repository",
            "use a path like 'services/api' without '..'",
        )
    return path


def build_git_argv(repo: Path, *args: str) -> list[str]:
    """argv for a git command run against ``repo``."""
    return ["git", "-C", str(repo), *args]


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding ``path``, or None when there is none."""
    if not path.is_dir():
        return None
    res = run(build_git_argv(path, "rev-parse", "--show-toplevel"), check=False, timeout=30)
    if res.returncode != 0:
        _raise_if_dubious(path, res.stderr)
        return None
    return Path(res.stdout.strip())


def resolve_commit(repo: Path, ref: str | None, branch: str | None) -> str:
    """The full sha ``ref`` (or the tip of ``branch``, or HEAD) names in ``repo``."""
    top = repo_root(repo)
    if top is None:
        raise InvalidInput(f"{repo} is not a git repository", "commit your app to git, or deploy with --from-dir")
    target = ref or branch or "HEAD"
    if target.startswith("-") or "\0" in target or "\n" in target:
        raise InvalidInput(f"'{target}' is not a valid git revision")
    res = run(
        build_git_argv(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{target}^{{commit}}"),
        check=False,
        timeout=30,
    )
    sha = res.stdout.strip()
    if res.returncode == 0 and sha:
        return sha
    if ref:
        raise NotFound(f"unknown commit '{ref}' in {repo}", "run 'git log' there to pick one")
    if branch:
        raise NotFound(f"unknown branch '{branch}' in {repo}", "check the service's branch in the blueprint")
    raise NotFound(f"{repo} has no commits yet", "commit your app first, or deploy with --from-dir")


def export_commit(repo: Path, sha: str, dest: Path) -> None:
    """Write the tree of commit ``sha`` into the new directory ``dest`` (git archive, then tar)."""
    top = repo_root(repo) or repo
    tarball = dest.parent / f".{dest.name}.tar"
    dest.mkdir(parents=True)
    try:
        run(build_git_argv(top, "archive", "--format=tar", "-o", str(tarball), sha), timeout=600)
        run(["tar", "-x", "--no-same-owner", "-f", str(tarball), "-C", str(dest)], timeout=600)
    finally:
        tarball.unlink(missing_ok=True)


def snapshot_dir(src: Path, dest: Path, keep_out: Iterable[Path] = ()) -> None:
    """Copy ``src`` to ``dest``, without .git/.venv/node_modules, special files or ``keep_out`` dirs."""
    if not src.is_dir():
        raise InvalidInput(f"{src} is not a directory", "pass the directory that holds your app")
    skip_dirs = {p.resolve() for p in keep_out} | {dest.resolve()}
    try:
        shutil.copytree(src, dest, symlinks=True, ignore=_snapshot_filter(skip_dirs))
    except shutil.Error as exc:
        raise CommandFailed(f"could not copy {src}: {_first_copy_error(exc)}") from None


def freeze_tree(root: Path) -> None:
    """Remove write permission from every regular file (directories stay writable for caches)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_mode & 0o222:
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)


def _snapshot_filter(skip_dirs: set[Path]) -> Callable[[str, list[str]], set[str]]:
    def ignore(dirpath: str, names: list[str]) -> set[str]:
        left_out = set()
        for name in names:
            if name in SNAPSHOT_EXCLUDES:
                left_out.add(name)
                continue
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                if Path(full).resolve() in skip_dirs:
                    left_out.add(name)
            elif not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                left_out.add(name)  # sockets, fifos, devices: copying a fifo would block
        return left_out

    return ignore


def _first_copy_error(exc: shutil.Error) -> str:
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    return str(errors[0][2]) if errors else str(exc)


def _raise_if_dubious(path: Path, stderr: str) -> None:
    if "dubious ownership" in stderr:
        raise InvalidInput(
            f"git refuses to read {path}: it belongs to another user",
            f"run 'git config --global --add safe.directory {path}'",
        )
