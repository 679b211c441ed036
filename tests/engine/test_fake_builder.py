"""FakeBuilder: the in-memory builder engine tests use keeps the real builder's promises."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from slipstream.builds import BuildFailed, BuildSpec
from slipstream.builds.fake import FakeBuilder
from slipstream.errors import Conflict, InvalidInput, NotFound


def spec(build_id: int = 1, **kw: Any) -> BuildSpec:
    fields: dict[str, Any] = dict(
        service="web",
        build_id=build_id,
        source_repo=Path("/repo"),
        commit="a" * 40,
        branch=None,
        from_dir=None,
        root_dir=None,
        runtime="python",
        build_command="make",
        env={},
    )
    fields.update(kw)
    return BuildSpec(**fields)


def test_a_build_is_a_real_directory_with_its_output(tmp_path: Path) -> None:
    source = tmp_path / "app"
    (source / "backend").mkdir(parents=True)
    (source / "backend" / "app.py").write_text("print('hi')\n")
    (source / ".git").mkdir()
    b = FakeBuilder(tmp_path / "builds")
    b.output = ["compiling", "done"]
    seen: list[str] = []
    built = b.build(spec(source_repo=None, from_dir=source, root_dir="backend"), on_output=seen.append)
    root = tmp_path / "builds" / "web" / "1"
    assert (built.source_dir, built.workdir, built.log_path) == (
        root / "src",
        root / "src" / "backend",
        root / "build.log",
    )
    assert (built.workdir / "app.py").read_text() == "print('hi')\n" and not (root / "src" / ".git").exists()
    assert built.commit is None  # a directory snapshot has no commit
    assert seen == ["compiling", "done"] and built.log_path.read_text() == "compiling\ndone\n"
    assert b.build(spec(2)).commit == "a" * 40 and [s.build_id for s in b.specs] == [1, 2]


def test_a_failing_build_raises_with_its_last_lines(tmp_path: Path) -> None:
    b = FakeBuilder(tmp_path)
    b.output = [f"line {i}" for i in range(30)]
    b.failures["web"] = 2
    with pytest.raises(BuildFailed) as info:
        b.build(spec())
    assert info.value.message == "build failed: `make` exited with 2"
    assert info.value.log_tail == [f"line {i}" for i in range(10, 30)]


def test_cancel_ends_a_slow_build_at_once(tmp_path: Path) -> None:
    b = FakeBuilder(tmp_path)
    b.seconds = 30
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="build canceled while `make` ran"):
        b.build(spec(), cancel=cancel)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"source_repo": None}, InvalidInput, "needs exactly one of a git repository or a directory"),
        ({"from_dir": Path("/src")}, InvalidInput, "needs exactly one of a git repository or a directory"),
    ],
)
def test_a_spec_needs_exactly_one_source(
    tmp_path: Path, kw: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        FakeBuilder(tmp_path).build(spec(**kw))


def test_a_build_id_is_used_once(tmp_path: Path) -> None:
    b = FakeBuilder(tmp_path)
    b.build(spec())
    with pytest.raises(Conflict, match="build 1 of web already exists"):
        b.build(spec())


@pytest.mark.parametrize(
    ("ref", "branch", "answer"),
    [
        (None, None, "head"),
        ("v1", None, "tagged"),
        (None, "main", "tagged"),
        ("b" * 40, None, "b" * 40),
        ("nope", None, NotFound("unknown commit 'nope' in /repo")),
        (None, "dev", NotFound("unknown branch 'dev' in /repo")),
    ],
)
def test_resolve_commit(tmp_path: Path, ref: str | None, branch: str | None, answer: str | NotFound) -> None:
    b = FakeBuilder(tmp_path, head="h" * 40)
    b.commits = {"v1": "1" * 40, "main": "1" * 40}
    expected = {"head": "h" * 40, "tagged": "1" * 40}
    if isinstance(answer, NotFound):
        with pytest.raises(NotFound, match=answer.message):
            b.resolve_commit(Path("/repo"), ref, branch)
    else:
        assert b.resolve_commit(Path("/repo"), ref, branch) == expected.get(answer, answer)
