"""One-off commands: exit codes, streamed output, timeouts and leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import InvalidInput
from slipstream.runtime import LocalDriver, run_command
from tests.polling import wait_for

from .conftest import BASE_ENV, is_live


def run(tmp_path: Path, command: str, **kw: object) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_command(command, tmp_path, BASE_ENV, tmp_path / "out.log", on_output=lines.append, **kw)  # type: ignore[arg-type]
    return code, lines


@pytest.mark.parametrize(
    ("command", "code"), [("true", 0), ("exit 3", 3), ("kill -9 $$", 137), ("no-such-command-here", 127)]
)
def test_exit_codes(tmp_path: Path, command: str, code: int) -> None:
    assert run(tmp_path, command)[0] == code


def test_output_is_streamed_line_by_line_and_appended_to_the_log(tmp_path: Path) -> None:
    (tmp_path / "out.log").write_text("before\n")
    code, lines = run(tmp_path, "echo one; echo two >&2; printf 'no newline'")
    assert code == 0
    assert lines == ["one", "two", "no newline"]
    assert (tmp_path / "out.log").read_text() == "before\none\ntwo\nno newline\n"


def test_environment_is_exactly_the_given_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_TEST_LEAK", "leaked")
    lines: list[str] = []
    run_command(
        'echo "[$SLIPSTREAM_TEST_LEAK][$ONLY]"; pwd',
        tmp_path,
        {**BASE_ENV, "ONLY": "me"},
        tmp_path / "out.log",
        on_output=lines.append,
    )
    assert lines == ["[][me]", str(tmp_path)]


def test_timeout_kills_the_group_and_returns_124(tmp_path: Path) -> None:
    code, lines = run(tmp_path, "sleep 60 & echo $!; echo started; sleep 60", timeout_s=0.3)
    assert code == 124
    assert lines[1] == "started"
    wait_for(lambda: not is_live(int(lines[0])), what="the group to die")


def test_timeout_of_a_term_ignoring_command_ends_with_sigkill(tmp_path: Path) -> None:
    code, lines = run(tmp_path, "trap '' TERM; echo $$; sleep 60", timeout_s=0.2, kill_grace_s=0.2)
    assert code == 124
    wait_for(lambda: not is_live(int(lines[0])), what="the group to die")


def test_background_leftovers_do_not_hold_the_command_open(tmp_path: Path) -> None:
    code, lines = run(tmp_path, "sleep 60 & echo $!; echo done", timeout_s=30)
    assert code == 0 and lines[1] == "done"
    wait_for(lambda: not is_live(int(lines[0])), what="the group to die")


def test_command_that_closes_its_output_but_keeps_running_still_times_out(tmp_path: Path) -> None:
    code, _ = run(tmp_path, "exec >/dev/null 2>&1; sleep 60", timeout_s=0.3, kill_grace_s=0.1)
    assert code == 124


def test_missing_directory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        run_command("true", tmp_path / "gone", BASE_ENV, tmp_path / "out.log")


def test_a_failing_output_callback_kills_the_command(tmp_path: Path) -> None:
    def boom(line: str) -> None:
        raise RuntimeError("consumer gone")

    with pytest.raises(RuntimeError):
        run_command("echo $$; sleep 60", tmp_path, BASE_ENV, tmp_path / "out.log", on_output=boom)
    pid = int((tmp_path / "out.log").read_text().split()[0])
    wait_for(lambda: not is_live(pid), what="the command to die")


def test_driver_run_once_delegates(driver: LocalDriver, tmp_path: Path) -> None:
    lines: list[str] = []
    assert driver.run_once("echo hi; exit 5", tmp_path, BASE_ENV, tmp_path / "x.log", 10, lines.append) == 5
    assert lines == ["hi"]


def test_output_is_read_when_descriptors_pass_1024(tmp_path: Path) -> None:
    """A daemon with a few hundred instances holds more than 1024 descriptors, where select()
    raised 'filedescriptor out of range' for every build command (seen with 200 services)."""
    import os
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        pytest.skip(f"the descriptor limit here is {soft}")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        assert run(tmp_path, "echo past-1024") == (0, ["past-1024"])
    finally:
        for fd in held:
            os.close(fd)
