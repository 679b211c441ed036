"""The daemon's end of HAProxy's access log: a unix datagram socket read by one thread.

Lifecycle: ``start()`` binds the socket (0600, a stale one is replaced) before HAProxy is
started or reloaded with ``render_access_log_config(path)``; the thread reads datagrams, parses
them, asks ``resolve(backend, server, port)`` which instance served the request (the proxy's slot
records know), and hands the lines to ``sink`` (``LogPipeline.emit``, which never blocks).
``stop()`` closes the socket. A datagram that is not an access line is kept as an event line.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from slipstream.logs.access import access_line, parse_access
from slipstream.logs.model import Level, LogLine, Stream

log = logging.getLogger(__name__)

Resolve = Callable[[str, str | None, int | None], str | None]
BATCH = 512  # datagrams handed on together
RCVBUF = 4 << 20


class AccessReceiver:
    """Reads HAProxy's access datagrams into ``sink``."""

    def __init__(self, path: Path, sink: Callable[[list[LogLine]], None], resolve: Resolve | None = None) -> None:
        self.path = path
        self.sink = sink
        self.resolve = resolve
        self.received = 0
        self.unparsed = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.settimeout(0.2)
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
        while not self._stop.is_set():
            try:
                first = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            grams = [first]
            sock.setblocking(False)
            try:
                while len(grams) < BATCH:
                    grams.append(sock.recv(65536))
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                sock.settimeout(0.2)
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
