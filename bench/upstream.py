"""The bench's upstream app: a dependency-free HTTP/1.1 keep-alive server on raw asyncio.

The same file serves every benchmark: started by the bench for the direct, HAProxy and nginx
runs, and deployed by slipstream (copied into a git repo as ``app.py``) for the daemon runs.
Every path answers ``200 ok <id>``, where the id is ``$APP_ID`` or else the ``VERSION`` file
beside this file. It listens on 127.0.0.1:``$PORT``.

Lifecycle: bind, serve until SIGTERM/SIGINT, then stop accepting, answer what is already in
flight with ``Connection: close``, close idle connections, and exit within about a second.
Run standalone with ``PORT=9001 APP_ID=A python upstream.py``.

Two knobs for other benchmarks: ``WORK_US=100`` spends that many microseconds of CPU on every
request (renders a small JSON document until the time is used), a realistic app rather than a bare
reply; ``CRASH_AFTER_FIRST_REQUEST_S=0.3`` exits (code 3) that long after the first request, which
under slipstream is the first health check: a release that passes its check and then dies. Every
response is one write, so a crash lands between two responses, never inside one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

MAX_HEAD = 65536


def identity() -> str:
    """The id this instance puts in every body."""
    ident = os.environ.get("APP_ID")
    if ident:
        return ident
    version = Path(__file__).with_name("VERSION")
    return version.read_text().strip() if version.exists() else "A"


def render_response(body: bytes, close: bool) -> bytes:
    """One complete 200 response carrying ``body``."""
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


def parse_head(head: bytes) -> tuple[int, bool]:
    """(Content-Length, wants close) of one request head (request line plus headers)."""
    request_line, *headers = head.split(b"\r\n")
    length, close = 0, request_line.endswith(b"HTTP/1.0")
    for line in headers:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip() or b"0")
        elif name == b"connection":
            value = value.strip().lower()
            close = value == b"close" or (close and value != b"keep-alive")
    return length, close


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse request heads, skip bodies, answer in order."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and not self.transport.is_closing():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.transport.close()
                return
            try:
                length, close = parse_head(self.buf[:end])
            except ValueError:
                self.transport.close()
                return
            if len(self.buf) < end + 4 + length:
                return  # the body is still arriving
            self.buf = self.buf[end + 4 + length :]
            close = close or self.app.stopping
            self.app.handled()
            self.transport.write(self.app.closing_reply if close else self.app.reply)
            if close:
                self.transport.close()

    def idle(self) -> bool:
        return not self.buf


class App:
    """The server: one reply, the open connections, and the graceful stop."""

    def __init__(self, body: bytes) -> None:
        self.reply = render_response(body, close=False)
        self.closing_reply = render_response(body, close=True)
        self.connections: set[HttpProtocol] = set()
        self.stopping = False
        self.work_s = float(os.environ.get("WORK_US") or 0) / 1e6
        crash = os.environ.get("CRASH_AFTER_FIRST_REQUEST_S")
        self.crash_after = float(crash) if crash else None

    def handled(self) -> None:
        """Per request: the CPU work asked for, and the crash timer on the first one."""
        if self.crash_after is not None:
            asyncio.get_running_loop().call_later(self.crash_after, os._exit, 3)
            self.crash_after = None
        if self.work_s:
            until = time.thread_time() + self.work_s
            doc = {"id": 1, "items": [{"n": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(8)]}
            while time.thread_time() < until:
                json.dumps(doc)

    async def serve(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        server = await loop.create_server(
            lambda: HttpProtocol(self), "127.0.0.1", port, reuse_address=True, backlog=1024
        )
        print(f"listening on 127.0.0.1:{port} as {identity()}", flush=True)
        await done.wait()
        self.stopping = True
        server.close()
        for _ in range(50):  # at most ~1 s for requests in flight
            for conn in list(self.connections):
                if conn.idle() and conn.transport is not None:
                    conn.transport.close()
            if not self.connections:
                break
            await asyncio.sleep(0.02)


def main() -> None:
    """Serve on $PORT until stopped."""
    app = App(f"ok {identity()}".encode())
    asyncio.run(app.serve(int(os.environ["PORT"])))


if __name__ == "__main__":
    main()
