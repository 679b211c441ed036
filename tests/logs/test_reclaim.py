"""Disk space of log file bytes already stored is given back (hole punching), losing no line."""

from __future__ import annotations

from pathlib import Path

from slipstream.logs.model import LogQuery, Source, Stream
from slipstream.logs.pipeline import LogPipeline
from slipstream.logs.reclaim import BLOCK, KEEP_TAIL, STEP, punch_range
from slipstream.logs.store import LogStore

MB = 1 << 20


def test_punch_range_keeps_a_tail_and_waits_for_a_step() -> None:
    assert punch_range(STEP, 0) == 0  # the kept tail leaves less than a step
    assert punch_range(STEP + KEEP_TAIL, 0) == STEP
    assert punch_range(STEP + KEEP_TAIL + 123, 0) == STEP  # whole blocks only
    assert punch_range(2 * STEP + KEEP_TAIL - BLOCK, STEP) == STEP  # not a step more yet
    assert punch_range(2 * STEP + KEEP_TAIL, STEP) == 2 * STEP


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_a_growing_file_is_punched_behind_the_store_and_every_line_is_kept(tmp_path: Path, store: LogStore) -> None:
    log = tmp_path / "web-d1-1.log"
    line = "x" * 99 + "\n"  # 100 bytes
    n = (STEP + 3 * MB) // len(line)
    with log.open("w") as f:  # the app has its file open for appending all along
        f.writelines(f"{i:08d}{line[8:]}" for i in range(n))
        f.flush()
        p = LogPipeline(store)
        p.watch(log, Source("web", Stream.APP, 1, "web-d1-1"))
        while p.cycle():
            pass
        size = log.stat().st_size
        assert size == n * len(line)
        assert allocated(log) < size - STEP + MB  # the stored bytes before the tail are freed
        assert p.stats()["file_bytes_freed"] >= STEP
        tail = log.read_bytes()[-KEEP_TAIL:]
        assert b"\0" not in tail and tail.endswith(f"{n - 1:08d}".encode() + line[8:].encode())
        f.write("after the punch\n")  # the app writes on at the same offset: nothing moves
        f.flush()
        while p.cycle():
            pass
    assert log.stat().st_size == n * len(line) + len("after the punch\n")
    assert store.stats()["lines"] == n + 1
    assert [x.message for x in store.search(LogQuery(limit=2))] == [f"{n - 1:08d}{line[8:-1]}", "after the punch"]
