"""The daemon's side of HAProxy's access log, for the proxy stand's access-log-on runs (issue 13).

A child process (``python -m bench.access_bench SOCKET DB STATS``) wired as ``daemon.py`` wires
the daemon: an :class:`~slipstream.logs.AccessReceiver` on the datagram socket hands each batch
of lines to ``LogPipeline.emit`` and to the metrics collector's per-request samples (what
``Observability.observe_access`` does); the pipeline's thread masks, indexes and stores them in a
``LogStore`` with the logs bench's 20 secrets. Its own process, so its CPU is the daemon's
access-log cost alone.

Lifecycle: ``AccessSink.start()`` spawns the child and waits until it has bound the socket (before
HAProxy starts, as the daemon does); the child rewrites STATS every 0.1 s with its counters and the
CPU seconds of each of its threads; ``settled()`` waits until every line received is stored (or
dropped) and the socket is quiet; ``stop()`` sends SIGTERM: the child stops the receiver, then the
pipeline (storing what is left), and exits.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs

SERVICE_INSTANCE = "bench-d1-1"  # what the stand's resolve answers for every access line


@dataclass(frozen=True)
class SinkStats:
    """The child's counters at one moment (cumulative since it started)."""

    received: int = 0  # datagrams the receiver read
    unparsed: int = 0  # datagrams that were not access lines
    stored: int = 0  # lines the pipeline stored
    dropped: int = 0  # lines the pipeline's emit buffer dropped (it keeps the newest 50,000)
    observed: int = 0  # requests handed to the metrics collector
    batches: int = 0  # batches of datagrams the receiver handed on (one recv loop each)
    commits: int = 0  # store transactions the pipeline made (one per cycle with lines)
    cpu_s: dict[str, float] | None = None  # thread ("receiver", "pipeline", "main") -> CPU seconds

    def cpu(self, thread: str) -> float:
        return (self.cpu_s or {}).get(thread, 0.0)

    @classmethod
    def read(cls, path: Path) -> SinkStats:
        """The last stats the child wrote (zeros before its first write)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError):
            return cls()


@dataclass(frozen=True)
class AccessSide:
    """What the daemon's side did with one run's access lines, from its start until it settled."""

    received: int
    stored: int
    dropped: int
    batches: int
    commits: int
    cpu_s: float  # the whole child process
    receiver_cpu_s: float  # reading, parsing, resolving, metrics samples
    pipeline_cpu_s: float  # masking, indexing, storing
    settle_s: float  # after the load ended, until every received line was stored

    def us_per_line(self, cpu_s: float | None = None) -> float:
        """Microseconds of CPU per access line received (one line per request)."""
        return (self.cpu_s if cpu_s is None else cpu_s) / max(1, self.received) * 1e6


def side_between(before: SinkStats, after: SinkStats, cpu_s: float, settle_s: float) -> AccessSide:
    """The daemon side's work between two stats snapshots; ``cpu_s`` is the process's CPU (psutil)."""
    return AccessSide(
        received=after.received - before.received,
        stored=after.stored - before.stored,
        dropped=after.dropped - before.dropped,
        batches=after.batches - before.batches,
        commits=after.commits - before.commits,
        cpu_s=cpu_s,
        receiver_cpu_s=after.cpu("receiver") - before.cpu("receiver"),
        pipeline_cpu_s=after.cpu("pipeline") - before.cpu("pipeline"),
        settle_s=settle_s,
    )


class AccessSink:
    """The child process holding the daemon's access-log side, under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "access.sock"
        self.stats_path = workdir / "access-stats.json"
        self.proc: Any = None

    def start(self) -> None:
        """Spawn the child; return once its socket is bound."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench.access_bench", str(self.socket), str(self.workdir / "access.db")]
        log = self.workdir / "access-sink.log"
        self.proc = procs.spawn([*argv, str(self.stats_path)], log, procs.bench_child_env(), cwd=procs.ROOT)
        procs.wait_for(lambda: self.stats_path.exists() or self.proc.poll() is not None, 30, 0.02, "access sink")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the access sink exited: {(self.workdir / 'access-sink.log').read_text()[-2000:]}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stats(self) -> SinkStats:
        return SinkStats.read(self.stats_path)

    def settled(self, quiet: float = 0.5, timeout: float = 60.0) -> SinkStats:
        """Wait until no datagram arrived for ``quiet`` s and every received line is stored or
        dropped; the stats then (after ``timeout`` s whatever they are)."""
        deadline = time.monotonic() + timeout
        last, since = self.stats(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.stats()
            if now.received != last.received:
                last, since = now, time.monotonic()
                continue
            last = now
            if now.stored + now.dropped >= now.received - now.unparsed and time.monotonic() - since >= quiet:
                return now
        return last

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, grace=10)
            self.proc = None


# -- the child -------------------------------------------------------------------------------------
def thread_cpu(name: str) -> float:
    """CPU seconds of this process's live thread called ``name`` (0 when there is none)."""
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            try:
                return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except OSError:
                return 0.0
    return 0.0


def run_child(socket_path: Path, db: Path, stats_path: Path) -> None:
    """Receiver -> pipeline (+ metrics samples), as the daemon runs them, until SIGTERM."""
    from bench.logs_bench import open_store
    from slipstream.logs import AccessReceiver, LogLine, LogPipeline, Stream
    from slipstream.logs.receiver import deepen_datagram_queue
    from slipstream.metrics.collect import Collector, Sources
    from slipstream.metrics.store import MetricsStore

    store = open_store(db)
    pipeline = LogPipeline(store)
    metrics = MetricsStore(db.with_name("metrics.db"))
    collector = Collector(metrics, Sources())
    counts = {"observed": 0, "batches": 0, "commits": 0}
    append = store.append_batches

    def counted_append(*args: Any, **kwargs: Any) -> Any:  # the same call, counted
        counts["commits"] += 1
        return append(*args, **kwargs)

    store.append_batches = counted_append

    def access(lines: list[LogLine]) -> None:  # daemon.py's sink, with Observability.observe_access
        counts["batches"] += 1
        pipeline.emit(lines, wake=False)
        for line in lines:
            fields = line.fields or {}
            status, total = fields.get("status"), fields.get("ta")
            if line.stream is Stream.ACCESS and line.service and isinstance(status, int) and total is not None:
                collector.observe_request(line.service, status, float(total), line.ts)
                counts["observed"] += 1

    bound = deepen_datagram_queue()  # as daemon.py does
    receiver = AccessReceiver(socket_path, access, lambda backend, server, port: SERVICE_INSTANCE, bound)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    pipeline.start()
    receiver.start()
    names = {"receiver": "access-log", "pipeline": "logs", "main": threading.current_thread().name}

    def write_stats() -> None:
        cpu = {key: thread_cpu(name) for key, name in names.items()}
        stats = SinkStats(
            receiver.received, receiver.unparsed, pipeline.stored_lines, pipeline.emit_dropped, **counts, cpu_s=cpu
        )
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats.__dict__))
        tmp.replace(stats_path)

    try:
        while not stop.wait(0.1):
            write_stats()
    finally:
        receiver.stop()
        pipeline.stop()
        store.close()
        metrics.close()


if __name__ == "__main__":
    run_child(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
