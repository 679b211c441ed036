"""Fixtures that run the real daemon, HAProxy and apps on free loopback ports under a temp home."""

from __future__ import annotations

import atexit
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from bench.procs import processes_under
from slipstream.engine.health import free_port
from slipstream.osusers import plan_traversal

APP_DIR = Path(__file__).parent / "app"
SLIPSTREAM = [sys.executable, "-m", "slipstream"]


@dataclass
class Daemon:
    home: Path
    http_port: int
    env: dict[str, str]

    def cli(
        self, *args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SLIPSTREAM, *args], env=env or self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()


_OPEN_HOMES: list[Path] = []


def open_home(home: Path) -> Path:
    """Where a daemon asked to live at ``home`` really lives. As root, each service builds and runs
    as its own user, which must traverse every parent of the home, and pytest makes its tmp root
    0700 at every start (another session's too): a new home goes into an open temp dir instead,
    linked from ``home`` so the test reads it where it asked."""
    if os.geteuid() != 0 or home.is_symlink() or not plan_traversal(home, Path("/"), -1):
        return home.resolve()
    if home.exists():  # made by the test itself: open its parents inside the temp dir
        tmp = Path(tempfile.gettempdir()).resolve()
        for parent in home.resolve().parents:
            if parent == tmp or tmp not in parent.parents:
                break
            os.chmod(parent, parent.stat().st_mode | 0o001)
        return home.resolve()
    real = Path(tempfile.mkdtemp(prefix="slipstream-home-"))
    os.chmod(real, 0o711)
    _OPEN_HOMES.append(real)
    home.parent.mkdir(parents=True, exist_ok=True)
    home.symlink_to(real, target_is_directory=True)
    return real


@atexit.register
def _remove_open_homes() -> None:
    for real in _OPEN_HOMES:
        shutil.rmtree(real, ignore_errors=True)


def start_daemon(home: Path, **extra: str) -> Daemon:
    home = open_home(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    port = free_port()
    env.update(SLIPSTREAM_HOME=str(home), SLIPSTREAM_HTTP_PORT=str(port), **extra)
    d = Daemon(home, port, env)
    r = d.cli("up", "--detach")
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def stop_daemon(d: Daemon) -> None:
    r = d.cli("down")
    leftovers = processes_under(d.home)
    for p in leftovers:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            try:
                p.kill()
            except psutil.Error:
                pass
    if r.returncode != 0 or leftovers:
        log = d.home / "daemon.log"
        print(log.read_text() if log.exists() else "no daemon log")


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A temp dir others can traverse: not under pytest's tmp dir, which pytest resets to 0700 at
    every start and so cuts the unprivileged postgres and redis users off their data."""
    root = Path(tempfile.mkdtemp(prefix="slipstream-e2e-"))
    os.chmod(root, 0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def open_daemon(open_root: Path) -> Iterator[Daemon]:
    """A daemon whose home the postgres and redis users can reach (databases, key value)."""
    d = start_daemon(open_root / "slipstream", SLIPSTREAM_HEALTH_DEADLINE="60", SLIPSTREAM_SETTLE_SECONDS="1")
    try:
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path / "home", SLIPSTREAM_HEALTH_DEADLINE="6", SLIPSTREAM_SETTLE_SECONDS="1.5")
    try:
        yield d
    finally:
        stop_daemon(d)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "PATH": os.environ["PATH"],
            "HOME": str(repo),
        },
    ).stdout.strip()


@dataclass
class AppRepo:
    path: Path
    commits: dict[str, str] = field(default_factory=dict)  # version -> sha


def make_app_repo(root: Path, blueprints: dict[str, str], versions: tuple[str, ...] = ("1", "2")) -> AppRepo:
    """A git repo holding the test app, committed once per version, plus blueprint files."""
    repo = AppRepo(root)
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for name in ("app.py", "worker.py", "job.py"):
        shutil.copy(APP_DIR / name, root / name)
    for name, text in blueprints.items():
        (root / name).write_text(text)
    for v in versions:
        (root / "VERSION").write_text(v + "\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"version {v}")
        repo.commits[v] = git(root, "rev-parse", "HEAD")
    return repo


class Load:
    """Bounded keep-alive load through HAProxy from a few threads; counts failures and versions."""

    def __init__(
        self, port: int, host: str, threads: int = 2, max_seconds: float = 600, new_connection_each: bool = False
    ) -> None:
        self.port, self.host = port, host
        self.new_connection_each = new_connection_each
        self.stop_evt = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_evt.set()
        for t in self.threads:
            t.join(timeout=15)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_evt.is_set() and time.monotonic() < self.deadline:
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                resp = conn.getresponse()
                body = resp.read().decode()
                with self.lock:
                    if resp.status == 200:
                        self.ok += 1
                        self.versions[body] += 1
                    else:
                        self.failures.append(f"status {resp.status}: {body[:80]}")
                if self.new_connection_each:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                with self.lock:
                    self.failures.append(f"{exc.__class__.__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            time.sleep(0.002)
        conn.close()
