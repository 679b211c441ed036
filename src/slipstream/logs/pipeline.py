"""The log pipeline the daemon runs: one thread from files and emitted lines to the store and drains.

Lifecycle:

1. ``LogPipeline(store, drains)`` resumes every file saved in the store (its tags
   and offset), so lines written while the daemon was down are read first.
2. ``start()`` starts the thread. Each cycle: poll the files (``Tailer``), take the lines other
   threads ``emit``-ted (daemon events, access lines), store both in one transaction with the
   files' offsets, offer the stored (masked) lines to the drains; every ``prune_every_s`` prune
   (by the store's ``Retention``). It sleeps ``poll_s`` only when a cycle found nothing to read,
   and twice as long after each further cycle that found nothing, up to ``idle_poll_s`` (4 x
   ``poll_s``): a poll costs a ``stat`` per followed file, 800 a second for 200 idle instances.
   A ``watch``, ``retire`` or waking ``emit`` ends the sleep at once.
3. The daemon calls ``watch(path, source)`` when an instance, pre-deploy, cron run or build
   starts writing a file and ``retire(path)`` once the writer has exited; ``handler()`` is a
   ``logging.Handler`` that turns the daemon's own log records into ``event`` lines.
4. ``stop()`` reads what is left (for up to ``grace_s``), closes the drains, and leaves the store
   open for its owner to close.

After each store, the disk space of file bytes now stored is given back (``Reclaimer``: hole
punching, files keep their size and offsets).

``emit`` never blocks: its buffer holds ``emit_capacity`` lines and drops the oldest beyond that
(counted in ``stats()``). Files need no buffer: what is not read yet waits in the file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from slipstream.logs.block import Batch
from slipstream.logs.drains import Drains
from slipstream.logs.model import Level, LogLine, Source, Stream
from slipstream.logs.parse import detect_level
from slipstream.logs.reclaim import Reclaimer
from slipstream.logs.store import LogStore
from slipstream.logs.tail import Tailer

log = logging.getLogger(__name__)

WAKE_AT = 1024  # emitted lines that wake the thread even when their emitter did not ask to
_PY_LEVELS = ((logging.CRITICAL, Level.FATAL), (logging.ERROR, Level.ERROR), (logging.WARNING, Level.WARN))


class LogPipeline:
    """Files and emitted lines -> store -> drains, on one thread; see the module docstring."""

    def __init__(
        self,
        store: LogStore,
        drains: Drains | None = None,
        *,
        poll_s: float = 0.25,
        idle_poll_s: float | None = None,
        prune_every_s: float = 60.0,
        emit_capacity: int = 50_000,
        clock: Callable[[], float] = time.time,
        **tail_options: Any,
    ) -> None:
        self.store = store
        self.drains = drains if drains is not None else Drains()
        self.poll_s = poll_s
        self.idle_poll_s = max(poll_s, idle_poll_s if idle_poll_s is not None else 4 * poll_s)
        self.prune_every_s = prune_every_s
        self.clock = clock
        self.tailer = Tailer(store.offsets(), store.masker, clock=clock, **tail_options)
        self.reclaimer = Reclaimer()  # disk space of file bytes already stored
        self._lock = threading.Lock()  # guards the tailer's file set and the emit buffer
        self._emitted: deque[LogLine] = deque(maxlen=emit_capacity)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self._found = False  # the last cycle read or stored something
        self.stored_lines = 0
        self.emit_dropped = 0
        self.errors = 0

    # -- what the daemon calls ----------------------------------------------------------------
    def watch(self, path: os.PathLike[str] | str, source: Source) -> None:
        """Follow a file from its start (or its saved offset), tagging its lines with ``source``."""
        with self._lock:
            self.tailer.watch(path, source)
        self._wake.set()

    def retire(self, path: os.PathLike[str] | str) -> None:
        """The file's writer has exited: read it to its end, then stop following it."""
        with self._lock:
            self.tailer.retire(path)
        self._wake.set()

    def emit(self, lines: Iterable[LogLine], *, wake: bool = True) -> None:
        """Queue lines for the next cycle; never blocks (the oldest are dropped when full).

        ``wake=False`` (HAProxy's access lines, a stream of small batches) leaves them for the
        next poll unless ``WAKE_AT`` lines are waiting: a cycle per batch cost a transaction per
        one or two lines at 2,000 requests/s (~500 us of CPU per line)."""
        with self._lock:
            for line in lines:
                if len(self._emitted) == self._emitted.maxlen:
                    self.emit_dropped += 1
                self._emitted.append(line)
            waiting = len(self._emitted)
        if wake or waiting >= WAKE_AT:
            self._wake.set()

    def event(self, message: str, service: str = "", level: Level | None = Level.INFO) -> None:
        """One daemon event line (``deploy 12 live``), for a service or the platform ("")."""
        self.emit([LogLine(self.clock(), service, Stream.EVENT, message, level=level)])

    def handler(self, level: int = logging.INFO) -> logging.Handler:
        """A logging handler whose records become ``event`` lines (``extra={"service": ...}``)."""
        return _EventHandler(self, level)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="logs", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """Store what is left to read (for up to ``grace_s``), then stop the thread and drains."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=grace_s + 30)
            self._thread = None
        deadline = time.monotonic() + grace_s
        while self.cycle() and time.monotonic() < deadline:
            pass
        with self._lock:
            self.tailer.close()
        self.drains.close(grace_s=min(2.0, grace_s))

    def stats(self) -> dict[str, Any]:
        return {
            "stored_lines": self.stored_lines,
            "emit_dropped": self.emit_dropped,
            "errors": self.errors,
            "files": len(self.tailer.watching()),
            "file_bytes_freed": self.reclaimer.freed,
            "drains": [d.__dict__ for d in self.drains.stats()],
            "store": self.store.stats(),
        }

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        sleep_s = self.poll_s
        while not self._stop.is_set():
            try:
                more = self.cycle()
                if self.clock() - self._last_prune >= self.prune_every_s:
                    self._last_prune = self.clock()
                    self.store.prune(now=self.clock())
            except Exception:
                self.errors += 1
                log.exception("log pipeline cycle failed; retrying")
                more = False
                self._stop.wait(1.0)
            if not more:
                sleep_s = self.poll_s if self._found else min(sleep_s * 2, self.idle_poll_s)
                if self._wake.wait(sleep_s):
                    sleep_s = self.poll_s
                self._wake.clear()

    def cycle(self) -> bool:
        """One round (see the module docstring); True if there is more to read right away."""
        with self._lock:
            read = self.tailer.poll()
            emitted = list(self._emitted)
            self._emitted.clear()
        batches = read.batches + _batches(emitted)
        self._found = bool(batches or read.offsets or read.finished)
        if not self._found:
            return read.more
        try:
            stored = self.store.append_batches(batches, read.offsets)
        except Exception:
            with self._lock:
                self.tailer.rollback()
                self._emitted.extendleft(reversed(emitted))
            raise
        with self._lock:
            self.tailer.commit(read)
        for off in read.offsets:
            self.reclaimer.stored(off.path, off.offset)
        for path in read.finished:
            self.store.forget(path)
            self.reclaimer.forget(path)
        self.stored_lines += sum(len(s.messages) for s in stored)
        if self.drains:
            self.drains.offer([line for s in stored for line in s.lines()])
        return read.more


def _batches(lines: list[LogLine]) -> list[Batch]:
    """Emitted lines as batches; a line without a level gets the one its text states."""
    return Batch.of(
        [line if line.level is not None else replace(line, level=detect_level(line.message)) for line in lines]
    )


class _EventHandler(logging.Handler):
    def __init__(self, pipeline: LogPipeline, level: int) -> None:
        super().__init__(level)
        self.pipeline = pipeline

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = next((lv for n, lv in _PY_LEVELS if record.levelno >= n), Level.INFO)
            if record.levelno < logging.INFO:
                level = Level.DEBUG
            line = LogLine(
                record.created, str(getattr(record, "service", "")), Stream.EVENT, self.format(record), level=level
            )
            self.pipeline.emit([line])
        except Exception:
            self.handleError(record)
