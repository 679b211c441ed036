"""The one door to the ``podman`` binary: every call gets slipstream's own containers.conf.

``PodmanCli(directory)`` writes ``directory/containers.conf`` (the settings Podman 4.3.1 needs on
these machines, see ``podman_commands.render_containers_conf``) and runs each argv with
``CONTAINERS_CONF`` pointing at it and no other inherited environment, so the machine's
``/etc/containers`` stays untouched. Three ways to run, by what the caller needs back:

- ``run``: output captured (the shared ``runner.run``): inspect, stop, rm, images;
- ``launch``: ``podman run --detach --log-driver passthrough`` with stdout and stderr on the
  instance's log file, which conmon then hands to the container, so the app writes straight into
  the file and keeps doing so while the daemon is down;
- ``stream``: output line by line to a log file and a callback, with a deadline: builds and jobs.

Env files live in ``directory/env`` (0700), each 0600 and deleted as soon as the call returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from slipstream.errors import CommandFailed, Unavailable
from slipstream.runner import Result, run
from slipstream.runtime.podman_commands import EnvPlan, plan_env, render_containers_conf
from slipstream.runtime.process import open_log, readable

TIMEOUT_EXIT_CODE = 124
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_LINE = 64 * 1024


class PodmanCli:
    """Runs podman with slipstream's containers.conf; ``owner`` labels what this installation makes."""

    def __init__(self, directory: Path, executable: str = "podman") -> None:
        self.directory = Path(directory)
        self.executable = executable
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.directory / "containers.conf"
        # podman's working directory: conmon drops files there (an ``oom`` marker after a kernel OOM kill)
        self._cwd = self.directory / "work"
        self._cwd.mkdir(exist_ok=True)
        self._env_dir = self.directory / "env"
        self._env_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self._env_dir, 0o700)
        _write_if_changed(self.conf_path, render_containers_conf())
        # one installation's containers, whatever their names: a stable token of the directory
        self.owner = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:12]
        self.env = {"PATH": PATH, "CONTAINERS_CONF": str(self.conf_path)}

    def available(self) -> bool:
        """True when the podman binary is installed."""
        return shutil.which(self.executable, path=PATH) is not None

    def run(
        self, argv: Sequence[str], *, timeout: float | None = 120, check: bool = True, input: str | None = None
    ) -> Result:
        """Run a ``podman …`` argv and capture its output; CommandFailed on a non-zero exit when ``check``."""
        return run(self._argv(argv), cwd=self._cwd, env=self.env, timeout=timeout, check=check, input=input)

    def launch(self, argv: Sequence[str], log_path: Path, extra_env: Mapping[str, str], timeout: float = 120) -> None:
        """Run ``podman run --detach`` with stdout and stderr appended to ``log_path``; raise
        CommandFailed with what podman wrote there when it fails."""
        fd = open_log(log_path)
        try:
            offset = os.fstat(fd).st_size
            try:
                proc = subprocess.run(
                    self._argv(argv),
                    cwd=self._cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=fd,
                    stderr=fd,
                    env={**extra_env, **self.env},
                    timeout=timeout,
                    check=False,
                )
            except FileNotFoundError:
                raise Unavailable("podman is not installed", "run 'make install'") from None
            except subprocess.TimeoutExpired:
                raise CommandFailed(f"podman run did not return within {timeout:g} s") from None
        finally:
            os.close(fd)
        if proc.returncode != 0:
            said = _read_from(log_path, offset).strip().splitlines()
            errors = [line for line in said if line.startswith("Error:")] or said or ["no output"]
            raise CommandFailed(f"podman run exited with {proc.returncode}: {errors[-1]}")

    def stream(
        self,
        argv: Sequence[str],
        log_path: Path,
        on_output: Callable[[str], None] | None = None,
        timeout_s: float | None = None,
        *,
        extra_env: Mapping[str, str] | None = None,
        on_timeout: Callable[[], None] | None = None,
    ) -> int:
        """Run to completion, each output line appended to ``log_path`` and passed to ``on_output``;
        the exit code, or 124 after ``timeout_s`` (``on_timeout`` runs first, e.g. to remove a container)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.Popen(
                self._argv(argv),
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**(extra_env or {}), **self.env},
            )
        except FileNotFoundError:
            raise Unavailable("podman is not installed", "run 'make install'") from None
        assert proc.stdout is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        timed_out = False
        buf = b""
        with open(log_path, "ab", buffering=0) as log:

            def emit(line: bytes) -> None:
                log.write(line + b"\n")
                if on_output is not None:
                    on_output(line.decode("utf-8", errors="replace").rstrip("\r"))

            fd = proc.stdout.fileno()
            try:
                while True:
                    if deadline is not None and not timed_out and time.monotonic() >= deadline:
                        timed_out = True
                        if on_timeout is not None:
                            on_timeout()
                        proc.terminate()
                        deadline = time.monotonic() + 10  # then SIGKILL the client
                    elif timed_out and deadline is not None and time.monotonic() >= deadline:
                        proc.kill()
                        deadline = None
                    if not readable(fd, 0.1):
                        continue
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf or len(buf) >= _MAX_LINE:
                        cut = buf.find(b"\n")
                        if cut < 0 or cut >= _MAX_LINE:
                            cut = _MAX_LINE
                            line, buf = buf[:cut], buf[cut:]
                        else:
                            line, buf = buf[:cut], buf[cut + 1 :]
                        emit(line)
                if buf:
                    emit(buf)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stdout.close()
        code = proc.returncode
        return TIMEOUT_EXIT_CODE if timed_out else (128 - code if code < 0 else code)

    @contextlib.contextmanager
    def env_file(self, env: Mapping[str, str]) -> Iterator[tuple[Path, EnvPlan]]:
        """A 0600 env file holding ``env`` (what the format can carry) for the duration of one call."""
        plan = plan_env(env)
        path = self._env_dir / f"{uuid.uuid4().hex}.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(plan.file_text)
            yield path, plan
        finally:
            path.unlink(missing_ok=True)

    def _argv(self, argv: Sequence[str]) -> list[str]:
        if not argv or argv[0] != "podman":
            raise ValueError(f"not a podman argv: {list(argv)[:3]}")
        return [self.executable, *argv[1:]]


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except OSError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_from(path: Path, offset: int, limit: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
