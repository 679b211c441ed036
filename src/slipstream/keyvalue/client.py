"""The one socket slipstream opens to its Redis servers: send a command, read its reply.

A few lines of RESP over TCP instead of a client library or ``redis-cli`` (which would want the
password in its argv or environment): slipstream only says AUTH, PING, INFO, CONFIG and ACL.
"""

from __future__ import annotations

import socket
from types import TracebackType

from slipstream.errors import CommandFailed, Unavailable
from slipstream.keyvalue.resp import ErrorReply, Incomplete, Reply, build_command, parse_reply


class ReplyError(CommandFailed):
    """Raised when the server answers a command with an error (``NOAUTH``, ``NOPERM``, ``LOADING``...)."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(reply.message)
        self.code = reply.code


class Connection:
    """One open connection; use as a context manager, or :func:`connect` to log in at once."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unavailable(f"Redis on {host}:{port} is not reachable: {exc.strerror or exc}") from None
        self._buf = b""
        self._where = f"{host}:{port}"

    def call(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply; raise :class:`ReplyError` on an error reply."""
        try:
            self._sock.sendall(build_command(*args))
            reply = self._read()
        except OSError as exc:
            raise Unavailable(f"Redis on {self._where} did not answer: {exc.strerror or exc}") from None
        if isinstance(reply, ErrorReply):
            raise ReplyError(reply)
        return reply

    def text(self, *args: str | bytes | int) -> str:
        """:meth:`call` for commands whose reply is one string (PING, INFO, GET)."""
        reply = self.call(*args)
        return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def _read(self) -> Reply:
        while True:
            try:
                reply, used = parse_reply(self._buf)
            except Incomplete:
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError(0, "connection closed by the server") from None
                self._buf += chunk
                continue
            self._buf = self._buf[used:]
            return reply

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def connect(host: str, port: int, user: str, password: str, *, timeout: float = 5.0) -> Connection:
    """A connection already logged in as ``user`` (``AUTH user password``)."""
    conn = Connection(host, port, timeout=timeout)
    try:
        conn.call("AUTH", user, password)
    except BaseException:
        conn.close()
        raise
    return conn
