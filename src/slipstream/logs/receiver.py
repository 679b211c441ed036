"""The daemon's end of HAProxy's access log: a unix datagram socket read by one thread.

Lifecycle: ``start()`` binds the socket (0600, a stale one is replaced) before HAProxy is
started or reloaded with ``render_access_log_config(path)``; the thread reads datagrams, parses
them, asks ``resolve(backend, server, port)`` which instance served the request (the proxy's slot
records know), and hands the lines to ``sink`` (``LogPipeline.emit``, which never blocks).
``stop()`` closes the socket. A datagram that is not an access line is kept as an event line.
The daemon first raises the kernel's queue bound for unix datagram sockets (``deepen_datagram_queue``).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from slipstream.logs.access import access_line, parse_access
from slipstream.logs.model import Level, LogLine, Stream

log = logging.getLogger(__name__)

Resolve = Callable[[str, str | None, int | None], str | None]
BATCH = 64  # datagrams handed on together
RCVBUF = 4 << 20
QLEN_PATH = Path("/proc/sys/net/unix/max_dgram_qlen")
QLEN_WANTED = 1024  # datagrams a unix socket may queue; Linux's default is 10
DEEP_QUEUE = 256  # a queue this deep may wait LINGER_S for a small batch to grow
PENDING_MAX = 50_000  # read but not handed on yet (bounded like the pipeline's own buffer)
LINGER_S = 0.01


def datagram_queue_bound(path: Path = QLEN_PATH) -> int:
    """The queue bound new unix datagram sockets get here (0 when it cannot be read)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def deepen_datagram_queue(path: Path = QLEN_PATH, wanted: int = QLEN_WANTED) -> int:
    """The queue bound new unix datagram sockets get, raised to ``wanted`` when lower and
    allowed (root; the setting belongs to the network namespace, and sockets made before keep
    theirs). With Linux's default of 10, HAProxy drops access lines as soon as this thread
    falls ten lines behind: about half of them at 10,000 requests/s on a 2-core machine."""
    bound = datagram_queue_bound(path)
    if not bound or bound >= wanted:
        return bound
    try:
        path.write_text(f"{wanted}\n")
    except OSError:
        log.warning("unix datagram queue bound %s (%s is not writable): HAProxy may drop access lines", bound, path)
        return bound
    log.info("raised %s from %s to %s so HAProxy's access lines are not dropped", path, bound, wanted)
    return wanted


class AccessReceiver:
    """Reads HAProxy's access datagrams into ``sink``."""

    def __init__(
        self,
        path: Path,
        sink: Callable[[list[LogLine]], None],
        resolve: Resolve | None = None,
        queue_bound: int | None = None,
    ) -> None:
        self.path = path
        self.sink = sink
        self.resolve = resolve
        self.received = 0
        self.unparsed = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # the socket's datagram queue bound (the daemon raises it first: deepen_datagram_queue)
        self.queue_bound = queue_bound

    def start(self) -> None:
        if self.queue_bound is None:
            self.queue_bound = datagram_queue_bound()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.setblocking(False)  # read by poll + recv (a timeout would make every read wait)
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        assert self._sock is not None
        sock = self._sock
        pending: deque[bytes] = deque()
        waiter = select.poll()
        waiter.register(sock, select.POLLIN)
        # The socket comes first: between two hand-ons of BATCH lines, everything queued is read
        # (HAProxy drops a line when the socket's queue, or its own send buffer, is full). With
        # a deep queue, a small batch waits LINGER_S to grow: one hand-on per few lines instead
        # of one per line (each costs a wake-up, a lock and the sink's own work per batch).
        linger = LINGER_S if (self.queue_bound or 0) >= DEEP_QUEUE else 0.0
        while not self._stop.is_set():
            if not pending:
                try:
                    if not waiter.poll(200):
                        continue
                except OSError:
                    return
                if linger:
                    time.sleep(linger)
            if not _drain(sock, pending) and not pending:
                return
            grams = [pending.popleft() for _ in range(min(BATCH, len(pending)))]
            try:
                self.sink(self.lines(grams))
            except Exception:
                log.exception("access log lines were lost")

    def lines(self, grams: list[bytes]) -> list[LogLine]:
        """The stored lines for some datagrams."""
        out: list[LogLine] = []
        for gram in grams:
            text = gram.decode("utf-8", "replace").rstrip("\n")
            rec = parse_access(text)
            self.received += 1
            if rec is None:
                self.unparsed += 1
                out.append(LogLine(time.time(), "", Stream.EVENT, f"haproxy: {text}", level=Level.WARN))
                continue
            instance = self.resolve(rec.backend, rec.server, rec.server_port) if self.resolve else None
            out.append(access_line(rec, instance))
        return out


def _drain(sock: socket.socket, pending: deque[bytes]) -> bool:
    """Read the datagrams already queued (up to PENDING_MAX waiting) without blocking; False
    once the socket is closed."""
    try:
        while len(pending) < PENDING_MAX:
            pending.append(sock.recv(65536))
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        return False
    return True
