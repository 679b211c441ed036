"""An in-memory builder for engine and API tests: the engine's ``BuildControl`` protocol, no commands.

``FakeBuilder.build`` keeps the real builder's promises that the engine depends on, without git or
a shell:

1. ``builds_dir/<service>/<build_id>/src`` is created fresh (a copy of ``from_dir`` when given,
   else empty), so a disk link or a static site's config has a real place to go; the returned
   ``Build``'s ``workdir`` is that directory (or ``rootDir`` inside it).
2. Every line of ``output`` goes to ``build.log`` and to ``on_output``.
3. The build takes ``seconds``; a ``cancel`` set meanwhile ends it at once with ``BuildFailed``
   ("build canceled ..."), as the real builder does when its command is interrupted.
4. A service named in ``failures`` fails with ``BuildFailed`` (exit code, last lines as its tail).

``resolve_commit`` answers full shas, ``HEAD`` (``head``) and the refs in ``commits``; anything
else is ``NotFound``, with the real builder's messages. Tests read ``specs`` (every build asked
for, in order) and may change ``output``, ``failures`` and ``seconds`` between deploys.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from slipstream.builds.model import Build, BuildFailed, BuildSpec
from slipstream.errors import Conflict, InvalidInput, NotFound

SHA = re.compile(r"[0-9a-f]{40}")
LOG_TAIL_LINES = 20


class FakeBuilder:
    """Implements ``engine.context.BuildControl`` with real, empty build directories."""

    def __init__(self, builds_dir: Path, *, head: str = "c0ffee" + "0" * 34) -> None:
        self.builds_dir = Path(builds_dir)
        self.head = head  # what HEAD (and a deploy without --commit) resolves to
        self.commits: dict[str, str] = {}  # branch or short ref -> full sha
        self.output: list[str] = ["==> Running build command (fake)"]  # lines every build prints
        self.failures: dict[str, int] = {}  # service -> exit code of its failing build command
        self.seconds = 0.0  # how long each build takes (``cancel`` ends it at once)
        self.specs: list[BuildSpec] = []
        self.removed: list[int] = []  # build ids ``remove`` deleted
        self._lock = threading.Lock()

    def build(
        self,
        spec: BuildSpec,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Build:
        """Make the build directory, print ``output``, wait ``seconds``; BuildFailed on a failure or cancel."""
        started = time.monotonic()
        if (spec.source_repo is None) == (spec.from_dir is None):
            raise InvalidInput(
                f"build {spec.build_id} of {spec.service} needs exactly one of a git repository or a directory"
            )
        with self._lock:
            self.specs.append(spec)
        root = self.builds_dir / spec.service / str(spec.build_id)
        if root.exists():
            raise Conflict(f"build {spec.build_id} of {spec.service} already exists", "start a new build")
        src = root / "src"
        if spec.from_dir is not None:
            shutil.copytree(spec.from_dir, src, ignore=shutil.ignore_patterns(".git"))
        else:
            src.mkdir(parents=True)
        log_path = root / "build.log"
        tail: list[str] = []

        def say(line: str) -> None:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")
            if on_output is not None:
                on_output(line)

        for line in self.output:  # the build command's own output: the tail a failure carries
            say(line)
            tail.append(line)
        command = spec.build_command or "(no build command)"
        if self.seconds and cancel is not None and cancel.wait(self.seconds):
            raise BuildFailed(f"build canceled while `{command}` ran", tail[-LOG_TAIL_LINES:])
        if self.seconds and cancel is None:
            time.sleep(self.seconds)
        code = self.failures.get(spec.service)
        if code is not None:
            message = f"build failed: `{command}` exited with {code}"
            say(f"==> {message}")
            raise BuildFailed(message, tail[-LOG_TAIL_LINES:], f"the full log is {log_path}")
        workdir = src / spec.root_dir if spec.root_dir else src
        workdir.mkdir(parents=True, exist_ok=True)
        return Build(
            spec.build_id,
            spec.service,
            spec.commit if spec.source_repo is not None else None,
            src,
            workdir,
            (),
            {},
            log_path,
            time.monotonic() - started,
        )

    def remove(self, build: Build) -> None:
        """Delete the build's directory, as the real builder does (its ``removed`` list records it)."""
        root = build.source_dir.parent
        if root.parent != self.builds_dir / build.service:
            raise InvalidInput(f"{build.source_dir} is not a build directory of {build.service}")
        shutil.rmtree(root, ignore_errors=True)
        self.removed.append(build.build_id)

    def resolve_commit(self, repo: Path, ref: str | None, branch: str | None) -> str:
        """The full sha ``ref`` (or ``branch``, or HEAD) names; NotFound for anything unknown."""
        target = ref or branch or "HEAD"
        if target == "HEAD":
            return self.head
        if target in self.commits:
            return self.commits[target]
        if SHA.fullmatch(target):
            return target
        if ref:
            raise NotFound(f"unknown commit '{ref}' in {repo}", "run 'git log' there to pick one")
        raise NotFound(f"unknown branch '{branch}' in {repo}", "check the service's branch in the blueprint")
