from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipstream.logs.mask import LogMasker
from slipstream.logs.model import Level, LogQuery, Source, Stream
from slipstream.logs.pipeline import LogPipeline
from slipstream.logs.store import LogStore
from slipstream.logs.tail import CUT, Tailer
from slipstream.secrets import MASK

APP = Source("web", Stream.APP, 1, "web-d1-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


def drain(p: LogPipeline) -> None:
    """Cycle until nothing is left to read right away."""
    for _ in range(1000):
        if not p.cycle():
            return
    raise AssertionError("the pipeline kept finding more to read")


def stored(store: LogStore, **kw: object) -> list[str]:
    return [x.message for x in store.search(LogQuery(limit=10_000, **kw))]  # type: ignore[arg-type]


def write(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pipeline(store: LogStore, clock: Clock) -> LogPipeline:
    return LogPipeline(store, clock=clock, partial_after_s=1.0, max_line=100)


def test_lines_appended_while_reading_arrive_in_order(tmp_path: Path, store: LogStore, pipeline: LogPipeline) -> None:
    log = tmp_path / "web-d1-1.log"
    write(log, "one\ntw")
    pipeline.watch(log, APP)
    drain(pipeline)
    assert stored(store) == ["one"]  # "tw" waits for its newline
    write(log, "o\nthree\n")
    drain(pipeline)
    assert stored(store) == ["one", "two", "three"]
    got = store.search(LogQuery())
    assert {(x.service, x.deploy_id, x.instance, x.stream) for x in got} == {("web", 1, "web-d1-1", Stream.APP)}


def test_a_line_without_newline_is_stored_after_a_pause(
    tmp_path: Path, store: LogStore, pipeline: LogPipeline, clock: Clock
) -> None:
    log = tmp_path / "a.log"
    write(log, "Password: ")
    pipeline.watch(log, APP)
    drain(pipeline)
    assert stored(store) == []
    clock.now += 2
    drain(pipeline)
    assert stored(store) == ["Password: "]
    write(log, "typed\n")
    drain(pipeline)
    assert stored(store) == ["Password: ", "typed"]


def test_truncation_starts_over(tmp_path: Path, store: LogStore, pipeline: LogPipeline) -> None:
    log = tmp_path / "a.log"
    write(log, "a long first line\nsecond\n")
    pipeline.watch(log, APP)
    drain(pipeline)
    with open(log, "wb") as f:  # copytruncate, then the app writes on
        f.write(b"after\n")
    drain(pipeline)
    assert stored(store) == ["a long first line", "second", "after"]


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(
    tmp_path: Path, store: LogStore, pipeline: LogPipeline
) -> None:
    log = tmp_path / "a.log"
    write(log, "old 1\n")
    pipeline.watch(log, APP)
    drain(pipeline)
    write(log, "old 2\n")
    os.rename(log, tmp_path / "a.log.1")
    write(log, "new 1\n")
    drain(pipeline)
    assert stored(store) == ["old 1", "old 2", "new 1"]


def test_resume_after_restart_reads_what_was_written_meanwhile(tmp_path: Path, masker: LogMasker, clock: Clock) -> None:
    log = tmp_path / "web-d1-1.log"
    write(log, "before\n")
    s1 = LogStore(tmp_path / "logs.db", masker)
    p1 = LogPipeline(s1, clock=clock)
    p1.watch(log, APP)
    drain(p1)
    s1.close()  # the daemon dies; the app keeps writing
    write(log, "while down 1\nwhile down 2\n")
    s2 = LogStore(tmp_path / "logs.db", masker)
    p2 = LogPipeline(s2, clock=clock)  # no watch(): the saved file and its tags are resumed
    assert p2.tailer.watching() == {str(log): APP}
    drain(p2)
    assert [(x.message, x.instance) for x in s2.search(LogQuery())] == [
        ("before", "web-d1-1"),
        ("while down 1", "web-d1-1"),
        ("while down 2", "web-d1-1"),
    ]
    s2.close()


def test_a_replaced_file_is_read_from_its_start_after_restart(tmp_path: Path, masker: LogMasker, clock: Clock) -> None:
    log = tmp_path / "a.log"
    write(log, "first file, a long line\n")
    s1 = LogStore(tmp_path / "logs.db", masker)
    p1 = LogPipeline(s1, clock=clock)
    p1.watch(log, APP)
    drain(p1)
    s1.close()
    log.unlink()
    write(log, "second\n")  # shorter than the saved offset and another inode
    s2 = LogStore(tmp_path / "logs.db", masker)
    drain(LogPipeline(s2, clock=clock))
    assert stored(s2) == ["first file, a long line", "second"]
    s2.close()


def test_an_instance_restart_appends_to_the_same_file(tmp_path: Path, store: LogStore, pipeline: LogPipeline) -> None:
    log = tmp_path / "web-d1-1.log"
    write(log, "run 1\n")
    pipeline.watch(log, APP)
    drain(pipeline)
    write(log, "run 2 after a crash\n")  # the runtime reopens with O_APPEND
    drain(pipeline)
    assert stored(store, instance="web-d1-1") == ["run 1", "run 2 after a crash"]


def test_long_lines_are_cut_and_their_rest_dropped(tmp_path: Path, store: LogStore, pipeline: LogPipeline) -> None:
    log = tmp_path / "a.log"
    write(log, "x" * 250 + "\nshort\n" + "y" * 150)
    pipeline.watch(log, APP)
    drain(pipeline)
    write(log, "y" * 1000 + "\nafter\n")
    drain(pipeline)
    assert stored(store) == ["x" * 100 + CUT, "short", "y" * 100 + CUT, "after"]


def test_a_secret_cut_in_half_by_the_line_cap_is_masked(
    tmp_path: Path, store: LogStore, masker: LogMasker, pipeline: LogPipeline
) -> None:
    masker.add(["correct-horse-battery-staple"])
    log = tmp_path / "a.log"
    write(log, "k" * 90 + "correct-horse-battery-staple and more\n")
    pipeline.watch(log, APP)
    drain(pipeline)
    assert stored(store) == ["k" * 90 + MASK + CUT]


def test_levels_are_detected_and_continue_into_indented_lines(
    tmp_path: Path, store: LogStore, pipeline: LogPipeline
) -> None:
    log = tmp_path / "a.log"
    write(log, 'INFO up\nTraceback (most recent call last):\n  File "a.py", line 1\nValueError: x\nplain\n')
    pipeline.watch(log, APP)
    drain(pipeline)
    got = store.search(LogQuery())
    assert [x.level for x in got] == [Level.INFO, Level.ERROR, Level.ERROR, Level.ERROR, None]
    assert [x.message for x in store.search(LogQuery(level=Level.ERROR))] == [
        "Traceback (most recent call last):",
        '  File "a.py", line 1',
        "ValueError: x",
    ]


def test_retire_reads_to_the_end_then_forgets(tmp_path: Path, store: LogStore, pipeline: LogPipeline) -> None:
    log = tmp_path / "a.log"
    write(log, "last words\n")
    pipeline.watch(log, APP)
    pipeline.retire(log)
    drain(pipeline)
    assert stored(store) == ["last words"]
    assert pipeline.tailer.watching() == {} and store.offsets() == {}


def test_a_deleted_file_is_forgotten_and_a_missing_one_waited_for(
    tmp_path: Path, store: LogStore, pipeline: LogPipeline
) -> None:
    gone, later = tmp_path / "gone.log", tmp_path / "later.log"
    write(gone, "x\n")
    pipeline.watch(gone, APP)
    pipeline.watch(later, APP)
    drain(pipeline)
    gone.unlink()
    drain(pipeline)
    assert set(pipeline.tailer.watching()) == {str(later)}
    write(later, "now\n")
    drain(pipeline)
    assert stored(store) == ["x", "now"]


def test_reads_are_bounded_by_the_budget(tmp_path: Path, store: LogStore) -> None:
    log = tmp_path / "a.log"
    write(log, ("z" * 99 + "\n") * 50_000)  # 5 MB
    t = Tailer(store.offsets(), budget=1 << 20, chunk=256 << 10)
    t.watch(log, APP)
    total = 0
    for _ in range(100):
        read = t.poll()
        assert read.bytes <= 1 << 20
        total += sum(len(b) for b in read.batches)
        t.commit(read)
        if not read.more:
            break
    assert total == 50_000
    t.close()


def test_rollback_reads_again_from_the_committed_offset(tmp_path: Path, store: LogStore) -> None:
    log = tmp_path / "a.log"
    write(log, "a\nb\n")
    t = Tailer(store.offsets())
    t.watch(log, APP)
    first = t.poll()
    t.rollback()  # e.g. the disk was full
    again = t.poll()
    assert [b.messages for b in first.batches] == [b.messages for b in again.batches] == [["a", "b"]]
    t.close()


def test_a_quiet_file_costs_one_stat_per_poll_and_its_next_line_still_arrives(
    tmp_path: Path, store: LogStore, pipeline: LogPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "web-d1-1.log"
    write(log, "one\n")
    pipeline.watch(log, APP)
    drain(pipeline)
    fstats: list[int] = []
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: (fstats.append(fd), real_fstat(fd))[1])
    for _ in range(5):
        drain(pipeline)
    assert fstats == []  # nothing new: no fstat, no read
    write(log, "two\n")
    drain(pipeline)
    assert stored(store) == ["one", "two"]
