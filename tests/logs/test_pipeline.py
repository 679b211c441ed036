from __future__ import annotations

import logging
import time
from pathlib import Path

from slipstream.logs.model import Level, LogLine, LogQuery, Source, Stream
from slipstream.logs.pipeline import WAKE_AT, LogPipeline
from slipstream.logs.store import LogStore, Retention
from tests.polling import wait_for


def test_emitted_lines_are_stored_with_a_level_and_the_buffer_is_bounded(store: LogStore) -> None:
    p = LogPipeline(store, emit_capacity=3)
    p.emit([LogLine(1.0, "web", Stream.EVENT, f"WARN event {i}") for i in range(5)])
    p.cycle()
    got = store.search(LogQuery())
    assert [x.message for x in got] == ["WARN event 2", "WARN event 3", "WARN event 4"]
    assert {x.level for x in got} == {Level.WARN}
    assert p.stats()["emit_dropped"] == 2


def test_the_daemons_own_log_records_become_event_lines(store: LogStore) -> None:
    p = LogPipeline(store)
    logger = logging.getLogger("test.slipstream.events")
    logger.setLevel(logging.DEBUG)
    h = p.handler()
    logger.addHandler(h)
    try:
        logger.info("deploy 12 of web is live", extra={"service": "web"})
        logger.error("haproxy did not answer")
        logger.debug("too chatty")  # below the handler's level
    finally:
        logger.removeHandler(h)
    p.cycle()
    got = store.search(LogQuery(streams=frozenset({Stream.EVENT})))
    assert [(x.service, x.level, x.message) for x in got] == [
        ("web", Level.INFO, "deploy 12 of web is live"),
        ("", Level.ERROR, "haproxy did not answer"),
    ]
    p.event("daemon started")
    p.cycle()
    assert store.search(LogQuery(limit=1))[0].message == "daemon started"


def test_the_thread_follows_across_a_deploy_and_an_instance_restart(tmp_path: Path, store: LogStore) -> None:
    p = LogPipeline(store, poll_s=0.02)
    p.start()
    try:
        q = LogQuery(service="web")
        cursor = 0
        seen: list[tuple[str | None, str]] = []

        def follow() -> None:
            nonlocal cursor
            lines, cursor = store.follow(q, cursor)
            seen.extend((x.instance, x.message) for x in lines)

        old = tmp_path / "web-d1-1.log"
        old.write_text("v1 serving\n")
        p.watch(old, Source("web", Stream.APP, 1, "web-d1-1"))
        wait_for(lambda: follow() or len(seen) == 1)
        new = tmp_path / "web-d2-1.log"  # deploy 2 starts, flips, and deploy 1 is drained
        new.write_text("v2 booting\n")
        p.watch(new, Source("web", Stream.APP, 2, "web-d2-1"))
        with open(old, "a") as f:
            f.write("v1 got SIGTERM\n")
        p.retire(old)
        wait_for(lambda: follow() or len(seen) == 3)
        with open(new, "a") as f:  # the new instance crashes and is restarted into the same file
            f.write("v2 crashed\nv2 booting again\n")
        wait_for(lambda: follow() or len(seen) == 5)
    finally:
        p.stop(grace_s=1)
    assert sorted(seen[1:3]) == [("web-d1-1", "v1 got SIGTERM"), ("web-d2-1", "v2 booting")]
    assert seen[0] == ("web-d1-1", "v1 serving") and seen[3:] == [
        ("web-d2-1", "v2 crashed"),
        ("web-d2-1", "v2 booting again"),
    ]
    assert set(p.tailer.watching()) == {str(new)}


def test_the_thread_prunes_by_age(tmp_path: Path) -> None:
    now = [1_796_000_000.0]
    store = LogStore(tmp_path / "l.db", retention=Retention(max_age_s=86400))
    store.append([LogLine(now[0] - 10 * 86400, "web", Stream.APP, "ancient")])  # blocks are pruned whole
    store.append([LogLine(now[0], "web", Stream.APP, "fresh")])
    p = LogPipeline(store, poll_s=0.01, prune_every_s=0, clock=lambda: now[0])
    p.start()
    try:
        wait_for(lambda: store.stats()["lines"] == 1)
    finally:
        p.stop(grace_s=1)
    assert [x.message for x in store.search(LogQuery())] == ["fresh"]
    store.close()


def test_stop_reads_what_is_left(tmp_path: Path, store: LogStore) -> None:
    p = LogPipeline(store, poll_s=60)
    p.start()
    log = tmp_path / "a.log"
    log.write_text("".join(f"{i}\n" for i in range(1000)))
    p.watch(log, Source("cron-job", Stream.CRON))
    p.emit([LogLine(1.0, "", Stream.EVENT, "daemon stopping")])
    p.stop(grace_s=5)
    assert store.stats()["lines"] == 1001


def test_lines_emitted_without_wake_wait_for_the_poll_unless_many(store: LogStore) -> None:
    p = LogPipeline(store, poll_s=60)
    p.start()
    try:
        p.emit([LogLine(1.0, "web", Stream.ACCESS, "GET / 200")], wake=False)
        time.sleep(0.3)
        assert store.stats()["lines"] == 0  # left for the next poll, a minute away
        p.emit([LogLine(1.0, "web", Stream.ACCESS, f"GET /{i} 200") for i in range(WAKE_AT - 1)], wake=False)
        wait_for(lambda: store.stats()["lines"] == WAKE_AT)  # a full batch wakes the thread
    finally:
        p.stop(grace_s=1)


def test_an_idle_pipeline_polls_less_often_and_still_reads_a_new_line(tmp_path: Path, store: LogStore) -> None:
    """Quiet files: the wait between polls doubles up to ``idle_poll_s``; a written line is still
    read within that, and a poll that finds one goes back to ``poll_s``."""
    f = tmp_path / "web-d1-1.log"
    f.write_text("")
    p = LogPipeline(store, poll_s=0.01, idle_poll_s=0.16)
    polls: list[float] = []
    poll = p.tailer.poll

    def counted():  # type: ignore[no-untyped-def]
        polls.append(time.monotonic())
        return poll()

    p.tailer.poll = counted  # type: ignore[method-assign]
    p.watch(f, Source("web", Stream.APP, 1, "web-d1-1"))
    p.start()
    try:
        time.sleep(1.0)
        idle = len(polls)
        assert 5 <= idle <= 15  # 0.01, 0.02, 0.04, 0.08, then 0.16 s apart: not the 100 polls of 0.01 s
        with open(f, "a") as out:
            out.write("hello\n")
        written = time.monotonic()
        wait_for(lambda: store.search(LogQuery(service="web")), timeout=5, what="the line")
        assert time.monotonic() - written < 0.16 + 0.5  # within one idle wait (and a loaded machine's slack)
        time.sleep(0.05)
        after = [t for t in polls if t > written]
        assert len(after) >= 3 and after[1] - after[0] < 0.05  # back to the short wait once it found one
    finally:
        p.stop(grace_s=1)
