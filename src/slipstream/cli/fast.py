"""The fast path of ``slipstream status`` and ``slipstream logs``: standard library only, so the
command starts in tens of milliseconds instead of the ~200 ms that importing Typer, Rich, httpx
and pydantic costs.

:func:`run` answers ``status [--json]`` and ``logs SERVICE [-n N] [--json]`` when everything is
ordinary: the daemon is the local one (``SLIPSTREAM_API_URL`` unset), it answers the GET with 200
and JSON, and a table is one Rich would draw without wrapping or styling beyond its bold header
(printable ASCII cells, a UTF-8 stdout, the table narrower than the console). Then it prints what
the full CLI prints, byte for byte (tests/cli/test_fast.py compares the two), and returns 0.
Anything else (no daemon, an error answer, bad settings, a cell with wide characters, ``--help``,
``logs -f``) returns None having printed nothing, and the full Typer app runs the command again (a
GET, so asking twice is harmless): its errors and its Rich tables stay the only ones, with no
second copy to drift.

Also here, because both paths use them: :func:`printable`, the status table's rows, a log line's text.
"""

from __future__ import annotations

import json
import os
import socket
import sys

TYPE_CHECKING = False  # typing is not imported: it costs a few ms of the start-up this module saves
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

# The C0 and C1 control characters but tab and newline, each shown as \xNN.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """``text`` with control characters (but tab and newline) shown as ``\\xNN``: what apps print
    and users name must not drive the terminal (colour, cursor moves, a title, a cleared line)."""
    return text.translate(_CONTROL)


STATUS_COLUMNS = ("project", "service", "live deploy", "url", "instances")
NO_SERVICES = "No services yet. Deploy one with 'slipstream deploy NAME --blueprint render.yaml'."


def _instances(s: dict[str, Any]) -> str:
    return (
        "; ".join(
            f"{i['id']} {i['state']}/{i.get('process', '?')} pid={i.get('pid')} restarts={i.get('restarts', 0)}"
            + (f" next restart in {i['next_restart_in_s']:.1f}s" if i.get("next_restart_in_s") else "")
            for i in s["instances"]
        )
        or "-"
    )


def _live(s: dict[str, Any]) -> str:
    live = s["live_deploy"]
    text = f"{live['id']} ({live['status']}, {(live['commit'] or 'dir')[:12]})" if live else "-"
    if s["active_deploy"]:
        text += f"; deploy {s['active_deploy']['id']} {s['active_deploy']['status']}"
    return text


def status_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    """The status table's rows (cells as given, :func:`printable` is the table's business)."""
    services = sorted(data["services"], key=lambda s: (s.get("project") or "", s["name"]))
    return [
        (s.get("project") or "-", s["name"], _live(s), s["url"] or f"({s['type']})", _instances(s)) for s in services
    ]


def console_width() -> tuple[int, bool] | None:
    """The width Rich's console in ``common.out()`` gets and whether it makes the header bold (a
    terminal that is not dumb); None when the environment asks Rich for something this module does
    not reproduce (forced terminal or colour)."""
    env = os.environ
    if "FORCE_COLOR" in env or "TTY_COMPATIBLE" in env:
        return None
    try:
        tty = sys.stdout.isatty()
    except ValueError:
        return None
    if not tty:
        return 200, False
    dumb = env.get("TERM", "").lower() in ("dumb", "unknown")
    columns, lines = env.get("COLUMNS", ""), env.get("LINES", "")
    if columns.isdigit() and lines.isdigit():  # Rich takes a full size from the environment as given
        return int(columns), not dumb
    if dumb:
        return 80, False
    if columns.isdigit():
        return int(columns), True
    width = 0
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
            break
        except (ValueError, OSError):
            pass
    return width or 80, True


def plain_table(columns: Sequence[str], rows: Iterable[Sequence[str]], width: int, bold: bool) -> str | None:
    """The table exactly as ``common.print_table`` draws it with Rich (box HEAVY_HEAD, padding 1) at
    this console ``width``; None when Rich would do more than pad cells (wrap a row that does not
    fit, measure wide or combining characters, expand tabs, break lines)."""
    cells = [[printable(c) for c in row] for row in rows]
    if not cells:
        return None
    for row in cells:
        for c in row:
            if not (c.isascii() and c.isprintable()):
                return None
    widths = [max(len(col), *(len(row[i]) for row in cells)) for i, col in enumerate(columns)]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def rule(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def line(edge: str, row: Sequence[str], style: bool = False) -> str:
        if style:
            return (
                edge
                + edge.join(
                    f"\x1b[1m \x1b[0m\x1b[1m{c.ljust(w)}\x1b[0m\x1b[1m \x1b[0m"
                    for c, w in zip(row, widths, strict=True)
                )
                + edge
            )
        return edge + edge.join(f" {c.ljust(w)} " for c, w in zip(row, widths, strict=True)) + edge

    lines = [rule("┏", "━", "┳", "┓"), line("┃", columns, bold), rule("┡", "━", "╇", "┩")]
    lines += [line("│", row) for row in cells]
    lines.append(rule("└", "─", "┴", "┘"))
    return "\n".join(lines) + "\n"


def api_socket() -> str | None:
    """The local daemon's API socket, as ``Settings.api_socket``; None when the environment holds
    another ``SLIPSTREAM_`` variable: then only the full settings can say whether it is valid."""
    env = os.environ
    if any(k.startswith("SLIPSTREAM_") and k != "SLIPSTREAM_HOME" for k in env):
        return None
    raw = env.get("SLIPSTREAM_HOME", "")
    if raw.strip():
        home = os.path.expanduser(raw)
    elif os.geteuid() == 0:
        home = "/var/lib/slipstream"
    else:
        home = os.path.join(os.path.expanduser("~"), ".local/share/slipstream")
    return os.path.join(os.path.realpath(home), "run", "api.sock")


def _settings_socket() -> str | None:
    """The API socket from the full settings (they are checked); None when they are bad."""
    from slipstream.settings import SettingsError, load_settings

    try:
        return str(load_settings().api_socket)
    except SettingsError:
        return None


def get_json(sock_path: str, path: str, timeout: float = 60.0) -> Any:
    """``GET path`` over the unix socket; the JSON body of a 200 answer, or None for any other
    outcome (refused, an error status, not JSON, cut short)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: slipstream\r\nConnection: close\r\n\r\n".encode("ascii"))
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
    except OSError:
        return None
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")
    if not sep or len(status) < 2 or status[1] != "200":
        return None
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = headers.get("content-length", "")
    if not headers.get("content-type", "").startswith("application/json") or not length.isdigit():
        return None  # uvicorn sends JSON with a length; anything else is the full client's to handle
    if len(body) < int(length):
        return None
    try:
        return json.loads(body[: int(length)])
    except ValueError:
        return None


def render_status(data: Any, as_json: bool) -> str | None:
    """What ``slipstream status [--json]`` prints for this answer of ``GET /v1/status``; None when
    only the full CLI can print it."""
    if not isinstance(data, dict) or not isinstance(data.get("services"), list):
        return None
    if as_json:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if not data["services"]:
        return NO_SERVICES + "\n"
    console = console_width()
    if console is None:
        return None
    try:
        rows = status_rows(data)
    except (KeyError, TypeError, AttributeError):
        return None
    return plain_table(STATUS_COLUMNS, rows, *console)


def log_text(line: dict[str, Any]) -> str:
    """One log line as people read it: time, where it came from, the message."""
    when = (line.get("time") or "")[:23].replace("T", " ")
    where = line.get("instance") or line.get("stream") or ""
    return printable(f"{when} [{where}] {line['message']}".lstrip())


def logs_args(argv: Sequence[str]) -> tuple[str, int, bool] | None:
    """(service, n, as_json) of ``logs SERVICE [-n N] [--json]`` in any order; None for any other
    form (``-f``, filters, ``-n5``, ``--help``): those are the Typer app's to parse."""
    if not argv or argv[0] != "logs":
        return None
    service, n, as_json = None, 100, False
    args = iter(argv[1:])
    for arg in args:
        if arg == "--json":
            as_json = True
        elif arg == "-n":
            value = next(args, "")
            if not (value.isascii() and value.isdigit()):
                return None
            n = int(value)
        elif service is None and arg[:1].isalnum() and all(c.isascii() and (c.isalnum() or c in "-_.") for c in arg):
            service = arg
        else:
            return None
    return None if service is None else (service, n, as_json)


def render_logs(data: Any, as_json: bool) -> str | None:
    """What ``slipstream logs SERVICE [--json]`` prints for this answer; None when only the full CLI
    can print it."""
    if not isinstance(data, dict) or not isinstance(data.get("lines"), list):
        return None
    try:
        if as_json:
            shown = [json.dumps(line, ensure_ascii=False) for line in data["lines"]]
        else:
            shown = [log_text(line) for line in data["lines"]]
    except (KeyError, TypeError, AttributeError):
        return None
    return "".join(text + "\n" for text in shown)


def run(argv: Sequence[str]) -> int | None:
    """Answer ``status [--json]`` or ``logs SERVICE [-n N] [--json]`` for the local daemon: the exit
    code; None, having printed nothing, when the full CLI must run the command."""
    if "SLIPSTREAM_API_URL" in os.environ:
        return None
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    if not encoding.startswith("utf"):
        return None  # Rich draws ASCII boxes then, and non-ASCII output needs the full CLI's care
    logs = logs_args(argv)
    if list(argv) in (["status"], ["status", "--json"]):
        path, as_json, render = "/v1/status", len(argv) == 2, render_status
    elif logs is not None:
        path, as_json, render = f"/v1/services/{logs[0]}/logs?n={logs[1]}", logs[2], render_logs
    else:
        return None
    sock_path = api_socket() or _settings_socket()
    if sock_path is None:
        return None
    text = render(get_json(sock_path, path), as_json)
    if text is None:
        return None
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # 'slipstream logs web | head': exit 1 quietly, as the Typer app does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
