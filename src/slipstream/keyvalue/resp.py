"""RESP2, the Redis wire protocol, as pure functions: encode a command, decode one reply.

Enough for what slipstream says to its servers (AUTH, PING, INFO, CONFIG, ACL); a reply is
``str`` (simple string), ``int``, ``bytes`` (bulk string), ``None`` (nil), a list of replies, or
an :class:`ErrorReply`. The socket side is :mod:`slipstream.keyvalue.client`.
"""

from __future__ import annotations

from dataclasses import dataclass

CRLF = b"\r\n"


@dataclass(frozen=True)
class ErrorReply:
    """A ``-`` reply: the server refused the command (``NOAUTH ...``, ``WRONGPASS ...``)."""

    message: str

    @property
    def code(self) -> str:
        """The first word, Redis' error class: ``ERR``, ``NOAUTH``, ``NOPERM``, ``LOADING``..."""
        return self.message.split(" ", 1)[0]


Reply = str | int | bytes | None | ErrorReply | list["Reply"]


class Incomplete(Exception):
    """Raised when the buffer ends before the reply does: read more and try again."""


def build_command(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings (binary-safe: no quoting, no escaping)."""
    if not args:
        raise ValueError("a command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse_reply(buf: bytes, start: int = 0) -> tuple[Reply, int]:
    """Decode the reply at ``buf[start:]``; return it and the offset after it (raise Incomplete if cut)."""
    end = buf.find(CRLF, start)
    if end < 0:
        raise Incomplete
    kind, line, after = buf[start : start + 1], buf[start + 1 : end], end + 2
    if kind == b"+":
        return line.decode(errors="replace"), after
    if kind == b"-":
        return ErrorReply(line.decode(errors="replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            raise Incomplete
        return buf[after : after + size], after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            item, after = parse_reply(buf, after)
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP reply: {buf[start : start + 20]!r}")
