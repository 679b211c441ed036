"""A small client for HAProxy's admin socket (the "runtime API"), checking every answer.

Protocol (HAProxy 2.6 management guide, section 9.3, and checked against the 2.6.12 binary):

1. Connect to the unix socket and send ONE line: the commands separated by ``;``. This is the
   non-interactive mode: HAProxy runs the commands in order and closes the connection when done.
2. Read to EOF. Each command's answer ends with an empty line, and no answer contains one, so the
   reply splits into one answer per command (the last answer may also end at EOF: ``del server``
   omits its empty line).
3. A change succeeded when its answer is empty (``set server ... state``, ``add map``, ``del
   map``) or is the report of ``set server ... addr`` ("IP changed from ..." / "no need to change
   the addr, port changed from '1' to '41001' by 'stats socket command'"); anything else ("No
   such server.", "Require 'backend/server'.") is HAProxy refusing it.
   HAProxy keeps running the later commands of the line after a refused one, so callers check
   that a change can apply before they send it.

A missing socket or a refused connection raises :class:`Unavailable`: HAProxy is not running.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from pathlib import Path

from slipstream.errors import CommandFailed, InvalidInput, Unavailable

# What ``set server <b>/<s> addr <ip> port <port>`` answers when it applied (2.6 wording).
_ADDR_CHANGED = re.compile(
    r"^(IP changed from '[^']*' to '[^']*'|no need to change the addr)"
    r"(, (port changed from '\d+' to '\d+'|no need to change the port))?"
    r"( by '[^']*')?$"
)


def is_success(answer: str) -> bool:
    """True if ``answer`` is what HAProxy says when a change applied."""
    answer = answer.strip()
    return answer == "" or bool(_ADDR_CHANGED.match(answer))


def build_line(commands: Sequence[str]) -> bytes:
    """Join ``commands`` into the one line sent to the socket, escaping ``;`` and ``\\``."""
    if not commands:
        raise InvalidInput("no admin command to send")
    parts = []
    for command in commands:
        if "\n" in command or "\r" in command or not command.strip():
            raise InvalidInput(f"admin command {command!r} is empty or spans lines")
        parts.append(command.replace("\\", "\\\\").replace(";", "\\;"))
    return ("; ".join(parts) + "\n").encode()


def parse_answers(reply: str) -> list[str]:
    """Split a reply into one answer per command (each answer ends with an empty line or EOF)."""
    lines = reply.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the text after the last newline
    answers: list[str] = []
    current: list[str] = []
    for line in lines:
        if line == "":
            answers.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        answers.append("\n".join(current))
    return answers


def check_answers(commands: Sequence[str], answers: Sequence[str]) -> None:
    """Raise :class:`CommandFailed` unless every command in ``commands`` answered success."""
    for command, answer in zip(commands, answers, strict=False):
        if not is_success(answer):
            first = answer.strip().splitlines()[0]
            raise CommandFailed(f"haproxy refused '{command}': {first}")
    if len(answers) != len(commands):
        raise CommandFailed(
            f"haproxy gave {len(answers)} answers to {len(commands)} commands "
            f"({'; '.join(commands)!r}): {' | '.join(answers)!r}"
        )


class AdminClient:
    """Sends commands to one HAProxy admin socket; one connection per round trip."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def send(self, commands: Sequence[str], *, check: bool = True) -> list[str]:
        """Run ``commands`` in one round trip and return one answer per command.

        With ``check`` (for changes) any answer that is not a success raises
        :class:`CommandFailed`; without it (for ``show`` queries) the answers are returned as-is.
        """
        commands = list(commands)
        answers = parse_answers(self.roundtrip(build_line(commands)))
        if check:
            check_answers(commands, answers)
        elif len(answers) != len(commands):
            raise CommandFailed(
                f"haproxy gave {len(answers)} answers to {len(commands)} commands ({'; '.join(commands)!r})"
            )
        return answers

    def roundtrip(self, line: bytes) -> str:
        """Send one raw line and return everything HAProxy writes back before closing."""
        chunks: list[bytes] = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(line)
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError) as exc:
            raise Unavailable(
                f"haproxy is not answering on {self.socket_path} ({exc.strerror or type(exc).__name__})",
                "start the proxy again with 'slipstream up'",
            ) from None
        except TimeoutError:
            raise Unavailable(
                f"haproxy did not answer on {self.socket_path} within {self.timeout:g} s", "check the haproxy process"
            ) from None
        return b"".join(chunks).decode("utf-8", errors="replace")
