"""The Builder: turn a commit or a directory into an immutable, runnable build directory.

Lifecycle of ``build(spec)`` (one service at a time; different services build in parallel):

1. ``builds_dir/<service>/<build_id>/`` is created fresh (a leftover of an interrupted attempt is
   removed; a finished build with that id is a Conflict).
2. The source lands in ``src/``: ``git archive`` of the resolved commit, or a copy of ``from_dir``.
3. The runtime's toolchain is prepared (Python: the cached virtualenv; Node: the npm cache).
4. With a service user (``spec.user``), ``src/`` and a new virtualenv become that user's (the
   build directory itself, ``build.log`` and ``build.json`` stay root's: the daemon writes them).
5. ``buildCommand`` runs with ``/bin/sh -c`` in ``src/<rootDir>`` (as the service's user when it
   has one); every line goes to ``build.log`` and to ``on_output``. Non-zero exit:
   ``BuildFailed`` with the last 20 lines.
6. Without a service user, files in ``src/`` lose their write bits (a reminder: builds are
   immutable and reused by rollbacks; a service's own user owns its tree and may write to it, as
   on Render's ephemeral disk). ``build.json`` records the result, and the ``Build`` is returned.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from slipstream.builds import source, toolchain
from slipstream.builds.model import Build, BuildFailed, BuildSpec
from slipstream.builds.toolchain import Toolchain
from slipstream.errors import Conflict, InvalidInput
from slipstream.osusers import hand_over
from slipstream.runtime.cgroups import OneOffCgroups
from slipstream.runtime.oneoff import CANCELED_EXIT_CODE, TIMEOUT_EXIT_CODE, run_command

LOG_TAIL_LINES = 20
RECORD = "build.json"


class Builder:
    """Builds releases under ``builds_dir`` with per-service caches under ``cache_dir``."""

    def __init__(
        self,
        builds_dir: Path,
        cache_dir: Path,
        python: str = sys.executable,
        *,
        timeout_s: float | None = 3600.0,
        uv: str | None = None,
        cgroups: OneOffCgroups | None = None,
        slots: int = 0,
    ) -> None:
        self.builds_dir = Path(builds_dir)
        self.cache_dir = Path(cache_dir)
        self.python = python
        self.uv = uv  # the uv binary that Python builds' `pip install` runs, or None for pip itself
        self.timeout_s = timeout_s
        self.cgroups = cgroups  # the build command runs in cgroups of its own: the process limit, no memory or CPU cap
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._python_version: str | None = None
        self.slots = slots or os.cpu_count() or 1  # builds at once; the rest wait (a blueprint's apply)
        self._slots = threading.BoundedSemaphore(self.slots)

    def repo_root(self, path: Path) -> Path | None:
        """The top of the git work tree holding ``path``, or None."""
        return source.repo_root(Path(path))

    def resolve_commit(self, repo: Path, ref: str | None, branch: str | None) -> str:
        """The full sha of ``ref`` (or the tip of ``branch``, or HEAD) in ``repo``."""
        return source.resolve_commit(Path(repo), ref, branch)

    def build(
        self,
        spec: BuildSpec,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Build:
        """Materialise the source and run the build command; raises BuildFailed on a non-zero exit
        (and when ``cancel`` is set while the build command runs)."""
        _check_service_name(spec.service)
        root_dir = source.parse_root_dir(spec.root_dir)
        if (spec.source_repo is None) == (spec.from_dir is None):
            raise InvalidInput(
                f"build {spec.build_id} of {spec.service} needs exactly one of a git repository or a directory"
            )
        with self._lock_for(spec.service), self._slot(spec, on_output, cancel):
            return self._build(spec, root_dir.as_posix(), on_output, cancel)

    @contextmanager
    def _slot(
        self, spec: BuildSpec, on_output: Callable[[str], None] | None, cancel: threading.Event | None
    ) -> Iterator[None]:
        """Hold one of the ``slots`` build slots; waits (saying so) while all are taken, and gives up
        with BuildFailed when ``cancel`` is set meanwhile."""
        if not self._slots.acquire(blocking=False):
            if on_output is not None:
                on_output(f"       waiting for a build slot ({self.slots} builds run at once)")
            while not self._slots.acquire(timeout=0.2):
                if cancel is not None and cancel.is_set():
                    raise BuildFailed(f"build {spec.build_id} of {spec.service} was canceled before it started", [])
        try:
            yield
        finally:
            self._slots.release()

    def remove(self, build: Build) -> None:
        """Delete a build's directory, and its virtualenv once no other build uses it."""
        _check_service_name(build.service)
        service_dir = self.builds_dir / build.service
        root = build.source_dir.parent
        if root.resolve().parent != service_dir.resolve():
            raise InvalidInput(f"{build.source_dir} is not a build directory of {build.service}")
        with self._lock_for(build.service):
            if root.exists():
                shutil.rmtree(root)
            venv = build.extra_env.get("VIRTUAL_ENV")
            if (
                venv
                and Path(venv).parent == self.cache_dir / build.service / "venvs"
                and venv not in self._venvs_in_use(service_dir)
            ):
                shutil.rmtree(venv, ignore_errors=True)

    # -- steps ---------------------------------------------------------------------------------
    def _build(
        self,
        spec: BuildSpec,
        root_dir: str,
        on_output: Callable[[str], None] | None,
        cancel: threading.Event | None = None,
    ) -> Build:
        started = time.monotonic()
        root = self.builds_dir / spec.service / str(spec.build_id)
        if (root / RECORD).exists():
            raise Conflict(f"build {spec.build_id} of {spec.service} already exists", "start a new build")
        if root.exists():
            shutil.rmtree(root)  # an attempt interrupted before it finished
        root.mkdir(parents=True)
        log_path, src = root / "build.log", root / "src"

        def say(line: str) -> None:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")
            if on_output is not None:
                on_output(line)

        commit = self._materialise(spec, src, say)
        workdir = self._workdir(src, root_dir, spec)
        chain = self._toolchain(spec, workdir, say)
        if spec.user is not None:
            hand_over(src, spec.user)  # nothing of the user's has run yet: the walk cannot be raced
            if chain.venv_created and chain.venv is not None:
                hand_over(chain.venv, spec.user)
        if spec.build_command:
            self._run_build_command(spec, workdir, chain, log_path, say, on_output, cancel)
        if chain.venv is not None:
            toolchain.mark_ready(chain.venv)
        if spec.user is None:
            source.freeze_tree(src)
        duration = time.monotonic() - started
        build = Build(
            spec.build_id,
            spec.service,
            commit,
            src,
            workdir,
            chain.path_prefix,
            dict(chain.extra_env),
            log_path,
            duration,
        )
        say(f"==> Build {spec.build_id} finished in {duration:.1f} s")
        _write_record(root / RECORD, build)
        return build

    def _materialise(self, spec: BuildSpec, src: Path, say: Callable[[str], None]) -> str | None:
        if spec.from_dir is not None:
            say(f"==> Copying {spec.from_dir} (without .git, .venv, node_modules)")
            source.snapshot_dir(Path(spec.from_dir), src, keep_out=(self.builds_dir, self.cache_dir))
            return None
        assert spec.source_repo is not None
        sha = source.resolve_commit(Path(spec.source_repo), spec.commit, spec.branch)
        say(f"==> Checking out commit {sha}")
        source.export_commit(Path(spec.source_repo), sha, src)
        return sha

    @staticmethod
    def _workdir(src: Path, root_dir: str, spec: BuildSpec) -> Path:
        workdir = src / root_dir if root_dir != "." else src
        where = f"commit {spec.commit or spec.branch or 'HEAD'}" if spec.from_dir is None else str(spec.from_dir)
        if not workdir.is_dir():
            raise InvalidInput(
                f"rootDir '{spec.root_dir}' is not a directory in {where}", "fix rootDir in the blueprint"
            )
        if not workdir.resolve().is_relative_to(src.resolve()):
            raise InvalidInput(f"rootDir '{spec.root_dir}' leads outside the source tree (a symlink?)")
        return workdir

    def _toolchain(self, spec: BuildSpec, workdir: Path, say: Callable[[str], None]) -> Toolchain:
        cache = self.cache_dir / spec.service
        if spec.runtime == "python":
            return toolchain.prepare_python(
                workdir, cache, self.python, self._version(), spec.build_command, spec.env, say, self.uv
            )
        if spec.runtime == "node":
            return toolchain.prepare_node(workdir, cache, spec.env)
        return toolchain.prepare_plain(spec.env)

    def _run_build_command(
        self,
        spec: BuildSpec,
        workdir: Path,
        chain: Toolchain,
        log_path: Path,
        say: Callable[[str], None],
        on_output: Callable[[str], None] | None,
        cancel: threading.Event | None = None,
    ) -> None:
        command = spec.build_command or ""
        tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

        def output(line: str) -> None:
            tail.append(line)
            if on_output is not None:
                on_output(line)

        say(f"==> Running build command '{command}'")
        user = spec.user.name if spec.user is not None else None
        code = run_command(
            command,
            workdir,
            chain.env,
            log_path,
            self.timeout_s,
            output,
            cancel=cancel,
            user=user,
            cgroups=self.cgroups,
        )
        if code == 0:
            return
        if chain.venv_created and chain.venv is not None:
            shutil.rmtree(chain.venv, ignore_errors=True)  # half-installed: never reuse it
        shown = command if len(command) <= 80 else command[:77] + "..."
        if code == CANCELED_EXIT_CODE and cancel is not None and cancel.is_set():
            message = f"build canceled while `{shown}` ran"
        elif code == TIMEOUT_EXIT_CODE and self.timeout_s is not None:
            message = f"build failed: `{shown}` did not finish within {self.timeout_s:g} s"
        else:
            message = f"build failed: `{shown}` exited with {code}"
        say(f"==> {message}")
        raise BuildFailed(message, list(tail), f"the full log is {log_path}")

    # -- helpers -------------------------------------------------------------------------------
    def _version(self) -> str:
        with self._locks_guard:
            if self._python_version is None:
                self._python_version = toolchain.python_version(self.python)
            return self._python_version

    def _lock_for(self, service: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(service, threading.Lock())

    @staticmethod
    def _venvs_in_use(service_dir: Path) -> set[str]:
        used = set()
        for record in service_dir.glob(f"*/{RECORD}"):
            try:
                venv = json.loads(record.read_text()).get("extra_env", {}).get("VIRTUAL_ENV")
            except (OSError, ValueError):
                continue
            if venv:
                used.add(venv)
        return used


def _check_service_name(service: str) -> None:
    if not service or service in (".", "..") or "/" in service or "\0" in service or service.startswith("."):
        raise InvalidInput(f"'{service}' cannot name a build directory", "service names are like 'api' or 'web-1'")


def _write_record(path: Path, build: Build) -> None:
    """Write build.json atomically (temp file, fsync, rename)."""
    data = {
        "build_id": build.build_id,
        "service": build.service,
        "commit": build.commit,
        "source_dir": str(build.source_dir),
        "workdir": str(build.workdir),
        "path_prefix": list(build.path_prefix),
        "extra_env": dict(build.extra_env),
        "log_path": str(build.log_path),
        "duration_s": build.duration_s,
    }
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
