"""Builder against real git repositories and build commands (no network)."""

from __future__ import annotations

import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from slipstream.builds import Build, Builder, BuildFailed, BuildSpec
from slipstream.errors import CommandFailed, Conflict, InvalidInput, NotFound
from slipstream.runtime.cgroups import LimitCgroups, OneOffCgroups
from tests.polling import wait_for

from .conftest import BUILD_ENV, Repo, git


def files_in(build: Build) -> dict[str, str]:
    root = build.source_dir
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# -- source ----------------------------------------------------------------------------------------


def test_builds_at_two_commits_hold_each_commits_files(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    first = repo.commit({"app.py": "v1", "old.txt": "gone later"})
    second = repo.commit({"app.py": "v2", "new.txt": "added"}, delete=("old.txt",))
    (repo.path / "app.py").write_text("uncommitted edit")  # the work tree plays no part
    (repo.path / "untracked.txt").write_text("x")

    b1 = builder.build(make_spec(commit=first[:8]))
    b2 = builder.build(make_spec(commit=second))
    head = builder.build(make_spec())

    assert b1.commit == first and b2.commit == second and head.commit == second
    assert files_in(b1) == {"app.py": "v1", "old.txt": "gone later"}
    assert files_in(b2) == files_in(head) == {"app.py": "v2", "new.txt": "added"}
    assert b1.source_dir == builder.builds_dir / "api" / str(b1.build_id) / "src"
    assert b1.workdir == b1.source_dir and b1.path_prefix == () and b1.commit is not None
    assert (repo.path / "app.py").read_text() == "uncommitted edit"
    assert git(repo.path, "status", "--porcelain") == "M app.py\n?? untracked.txt".strip()
    assert not os.stat(b1.source_dir / "app.py").st_mode & 0o222  # frozen (by convention)


def test_resolve_commit(builder: Builder, repo: Repo, tmp_path: Path) -> None:
    first = repo.commit({"a": "1"})
    git(repo.path, "checkout", "-q", "-b", "feature")
    second = repo.commit({"a": "2"})
    git(repo.path, "checkout", "-q", "main")
    (repo.path / "sub").mkdir()

    assert builder.resolve_commit(repo.path, None, None) == first
    assert builder.resolve_commit(repo.path, None, "feature") == second
    assert builder.resolve_commit(repo.path, second[:7], "main") == second  # a ref wins over the branch
    assert builder.resolve_commit(repo.path / "sub", "HEAD", None) == first
    assert builder.repo_root(repo.path / "sub") == repo.path
    assert builder.repo_root(tmp_path) is None

    with pytest.raises(NotFound) as err:
        builder.resolve_commit(repo.path, "abc1234", None)
    assert err.value.message == f"unknown commit 'abc1234' in {repo.path}"
    with pytest.raises(NotFound, match="unknown branch 'nope'"):
        builder.resolve_commit(repo.path, None, "nope")
    with pytest.raises(InvalidInput, match="not a valid git revision"):
        builder.resolve_commit(repo.path, "--output=/tmp/x", None)
    with pytest.raises(InvalidInput) as bad:
        builder.resolve_commit(tmp_path, None, None)
    assert bad.value.message == f"{tmp_path} is not a git repository"
    empty = Repo(tmp_path / "empty")
    with pytest.raises(NotFound, match="has no commits yet"):
        builder.resolve_commit(empty.path, None, None)


def test_unknown_commit_fails_the_build_before_anything_runs(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec], tmp_path: Path
) -> None:
    repo.commit({"a": "1"})
    with pytest.raises(NotFound, match="unknown commit 'deadbeef'"):
        builder.build(make_spec(commit="deadbeef", build_command="touch ran"))
    assert not list(builder.builds_dir.rglob("ran"))


def test_root_dir_is_honoured(builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]) -> None:
    repo.commit({"services/api/app.py": "api", "web/index.html": "web"})
    b = builder.build(make_spec(root_dir="services/api", build_command="pwd > where.txt"))
    assert b.workdir == b.source_dir / "services" / "api"
    assert (b.workdir / "where.txt").read_text().strip() == str(b.workdir)
    assert (b.source_dir / "web" / "index.html").exists()  # the whole repository is there


@pytest.mark.parametrize(
    ("root_dir", "message"),
    [
        ("../outside", "must be a relative path inside the repository"),
        ("/etc", "must be a relative path inside the repository"),
        ("services/../../x", "must be a relative path inside the repository"),
        ("missing", "rootDir 'missing' is not a directory"),
        ("link", "leads outside the source tree"),
    ],
)
def test_bad_root_dirs_are_rejected(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec], root_dir: str, message: str
) -> None:
    repo.commit({"a": "1"})
    os.symlink("/tmp", repo.path / "link")
    repo.commit({})
    with pytest.raises(InvalidInput, match=message):
        builder.build(make_spec(root_dir=root_dir))


def test_from_dir_snapshot_leaves_out_git_venv_and_node_modules(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec], tmp_path: Path
) -> None:
    repo.commit({"app.py": "committed"})
    (repo.path / "draft.py").write_text("not committed")
    for junk in (".venv/bin/python", "node_modules/x/index.js", "web/node_modules/y.js"):
        (repo.path / junk).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / junk).write_text("junk")
    (repo.path / "web" / "page.html").write_text("page")
    os.symlink("app.py", repo.path / "alias.py")
    os.mkfifo(repo.path / "a.fifo")

    b = builder.build(make_spec(source_repo=None, from_dir=repo.path))

    assert b.commit is None
    assert files_in(b) == {
        "alias.py": "committed",
        "app.py": "committed",
        "draft.py": "not committed",
        "web/page.html": "page",
    }
    assert (b.source_dir / "alias.py").is_symlink()
    assert not (b.source_dir / ".git").exists()


def test_from_dir_containing_the_builds_dir_does_not_copy_itself(
    tmp_path: Path, make_spec: Callable[..., BuildSpec]
) -> None:
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "main.py").write_text("x")
    builder = Builder(app / ".slip" / "builds", app / ".slip" / "cache")
    first = builder.build(make_spec(source_repo=None, from_dir=app))
    second = builder.build(make_spec(source_repo=None, from_dir=app))
    assert files_in(first) == files_in(second) == {"src/main.py": "x"}


# -- build command -------------------------------------------------------------------------------


def test_build_command_output_is_streamed_and_logged_with_exactly_the_build_env(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPSTREAM_TEST_LEAK", "leaked")
    repo.commit({"a": "1"})
    lines: list[str] = []
    b = builder.build(
        make_spec(
            build_command='echo "compiling [$SLIPSTREAM_TEST_LEAK] [$MODE]"; echo warn >&2',
            env={**BUILD_ENV, "MODE": "prod"},
        ),
        on_output=lines.append,
    )
    assert "compiling [] [prod]" in lines and "warn" in lines
    log = b.log_path.read_text()
    assert "compiling [] [prod]\nwarn\n" in log and f"Checking out commit {b.commit}" in log
    assert b.duration_s > 0


def test_failing_build_command_raises_build_failed_with_the_log_tail(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    repo.commit({"a": "1"})
    cmd = "for i in $(seq 1 30); do echo line $i; done; exit 3"
    spec = make_spec(build_command=cmd)
    with pytest.raises(BuildFailed) as err:
        builder.build(spec)
    exc = err.value
    assert isinstance(exc, CommandFailed)
    assert exc.message == f"build failed: `{cmd}` exited with 3"
    assert exc.log_tail == [f"line {i}" for i in range(11, 31)]
    log = builder.builds_dir / "api" / str(spec.build_id) / "build.log"
    assert "line 1\n" in log.read_text() and exc.hint and str(log) in exc.hint


def test_a_build_command_runs_under_the_process_limit_and_its_setsid_children_are_killed(
    tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    limits = LimitCgroups.detect(f"slipstream-test-{secrets.token_hex(4)}")
    if limits is None or "pids" not in dict(limits.bases):
        pytest.skip("this machine gives no pids cgroup to the test process")
    try:
        repo.commit({"a": "1"})
        builder = Builder(tmp_path / "b", tmp_path / "c", cgroups=OneOffCgroups(None, limits, 32))
        pids = dict(limits.bases)["pids"]
        command = f"setsid sleep 1000 & echo $! > {tmp_path}/child; cat {pids}/run-*/pids.max"
        lines: list[str] = []
        builder.build(make_spec(build_command=command), on_output=lines.append)
        assert "32" in lines  # the build's own cgroup, with the instances' process limit
        child = int((tmp_path / "child").read_text())
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        assert list(pids.glob("run-*")) == []
    finally:
        limits.cleanup()


def test_build_timeout(tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec]) -> None:
    repo.commit({"a": "1"})
    builder = Builder(tmp_path / "b", tmp_path / "c", timeout_s=0.3)
    with pytest.raises(BuildFailed, match=r"build failed: `sleep 30` did not finish within 0.3 s"):
        builder.build(make_spec(build_command="sleep 30"))


def test_same_build_id_twice_is_a_conflict_but_an_interrupted_attempt_is_redone(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    repo.commit({"a": "1"})
    leftover = builder.builds_dir / "api" / "7" / "src"
    leftover.mkdir(parents=True)
    (leftover / "stale").write_text("from a crashed daemon")
    b = builder.build(make_spec(build_id=7))
    assert files_in(b) == {"a": "1"}
    with pytest.raises(Conflict):
        builder.build(make_spec(build_id=7))


@pytest.mark.parametrize("service", ["", "..", "a/b", ".hidden"])
def test_service_names_that_are_not_directory_names_are_rejected(
    builder: Builder, service: str, make_spec: Callable[..., BuildSpec]
) -> None:
    with pytest.raises(InvalidInput):
        builder.build(make_spec(service=service))


def test_needs_exactly_one_source(builder: Builder, make_spec: Callable[..., BuildSpec], tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        builder.build(make_spec(from_dir=tmp_path))
    with pytest.raises(InvalidInput, match="exactly one"):
        builder.build(make_spec(source_repo=None))


def test_node_builds_get_a_per_service_npm_cache(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    repo.commit({"package.json": "{}"})
    lines: list[str] = []
    b = builder.build(
        make_spec(runtime="node", build_command='echo "$npm_config_cache"; echo "$PATH"'), on_output=lines.append
    )
    assert str(builder.cache_dir / "api" / "npm") in lines
    assert f"{b.workdir}/node_modules/.bin:/usr/local/bin:/usr/bin:/bin" in lines
    assert b.path_prefix == (str(b.workdir / "node_modules" / ".bin"),)


def test_different_services_build_at_the_same_time(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec], tmp_path: Path
) -> None:
    repo.commit({"a": "1"})
    flag = tmp_path / "b-started"
    # a waits (bounded) for b's build command: it can only succeed if both run at once
    wait = f"for i in $(seq 1 200); do [ -f {flag} ] && exit 0; sleep 0.05; done; exit 1"
    results: dict[str, object] = {}

    def run(service: str, command: str) -> None:
        try:
            results[service] = builder.build(make_spec(service=service, build_command=command))
        except Exception as exc:  # reported below
            results[service] = exc

    ta = threading.Thread(target=run, args=("a", wait))
    ta.start()
    run("b", f"touch {flag}")
    ta.join(timeout=30)
    assert isinstance(results["a"], Build) and isinstance(results["b"], Build), results


def test_remove_deletes_the_build_directory(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec], tmp_path: Path
) -> None:
    repo.commit({"a": "1"})
    b = builder.build(make_spec(build_command="mkdir -p out && touch out/x"))
    builder.remove(b)
    assert not b.source_dir.parent.exists()
    fake = Build(1, "api", None, tmp_path / "elsewhere" / "src", tmp_path, ())
    with pytest.raises(InvalidInput):
        builder.remove(fake)
    assert stat.S_ISDIR(os.stat(builder.builds_dir / "api").st_mode)


def test_builds_beyond_the_slots_wait_their_turn_and_a_cancel_ends_the_wait(
    tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    repo.commit({"a": "1"})
    builder = Builder(tmp_path / "b", tmp_path / "c", slots=1)
    gate = tmp_path / "go"
    first = threading.Thread(
        target=builder.build,
        args=(make_spec(service="one", build_command=f"while [ ! -f {gate} ]; do sleep 0.02; done"),),
    )
    first.start()
    try:
        wait_for(lambda: (builder.builds_dir / "one").is_dir(), what="the first build to take the slot")
        lines: list[str] = []
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        with pytest.raises(BuildFailed, match="was canceled before it started"):
            builder.build(make_spec(service="two", build_command="true"), on_output=lines.append, cancel=cancel)
        assert lines == ["       waiting for a build slot (1 builds run at once)"]
        assert not (builder.builds_dir / "two").exists()  # it never started

        later: list[Build] = []
        second = threading.Thread(target=lambda: later.append(builder.build(make_spec(service="three"))))
        second.start()
        second.join(0.3)
        assert not later  # still waiting for the slot
        gate.touch()
        second.join(30)
        assert later and later[0].service == "three"
    finally:
        gate.touch()
        first.join(30)
