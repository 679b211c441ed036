"""The fast path of ``slipstream status`` (cli.fast) prints what the full Typer app prints, and
imports none of Typer, Rich, httpx or pydantic to do it."""

from __future__ import annotations

import io
import json
import os
import pty
import random
import socketserver
import string
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from slipstream.cli import common, fast
from slipstream.settings import load_settings
from tests.cli.conftest import Run
from tests.cli.fakeapi import DEPLOY, LOGS, MASK, STATUS, FakeApi, error, log_line

SRC = Path(common.__file__).parents[2]
HEAVY = ("typer", "click", "rich", "httpx", "pydantic", "slipstream.cli.app", "slipstream.settings")
# Run the command through the entry point, then list the heavy modules it loaded (on stderr).
VIA_MAIN = (
    "import sys\n"
    "sys.argv = ['slipstream', *sys.argv[1:]]\n"
    "from slipstream.cli.main import main\n"
    "try:\n    main()\nfinally:\n"
    f"    heavy = {HEAVY!r}\n"
    "    print(sorted(m for m in sys.modules for h in heavy if m == h or m.startswith(h + '.')), file=sys.stderr)\n"
)
# The full Typer app, never the fast path.
VIA_APP = "import sys\nsys.argv = ['slipstream', *sys.argv[1:]]\nfrom slipstream.cli.app import app\napp()\n"


def service(name: str, project: str | None, **kw: Any) -> dict[str, Any]:
    return {**STATUS["services"][0], "name": name, "project": project, **kw}  # type: ignore[dict-item]


MANY = {
    "services": [
        service("worker", "shop", url=None, type="worker", live_deploy=None, instances=[]),
        service("web", "shop", active_deploy={**DEPLOY, "id": 8, "status": "health_check"}),
        service(
            "api",
            None,
            live_deploy={**DEPLOY, "commit": None},
            instances=[
                {"id": "api-d7-1", "state": "running", "process": "backoff", "pid": None, "next_restart_in_s": 2.25}
            ],
        ),
        service("[bold]x[/bold]", "  spaced  ", url="http://x.localhost:8080/\x1b[2J"),
    ],
    "http_port": 8080,
}


class Answer:
    """What the fake daemon answers next: a status code and a JSON body."""

    def __init__(self) -> None:
        self.code, self.body = 200, json.dumps(STATUS).encode()
        self.requests = 0
        self.path = ""

    def set(self, code: int, body: Any) -> None:
        self.code, self.body = code, json.dumps(body).encode()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, Answer]]:
    """A daemon's API socket under ``tmp_path/run`` that answers like uvicorn (JSON with a length)."""
    answer = Answer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            answer.requests += 1
            answer.path = self.path
            self.send_response(answer.code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    (tmp_path / "run").mkdir()
    server = socketserver.ThreadingUnixStreamServer(str(tmp_path / "run" / "api.sock"), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield tmp_path, answer
    finally:
        server.shutdown()
        server.server_close()


def run(code: str, home: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), "SLIPSTREAM_HOME": str(home), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-c", code, *argv], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def loaded(result: subprocess.CompletedProcess[str]) -> list[str]:
    return json.loads(result.stderr.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"]])
@pytest.mark.parametrize("body", [STATUS, MANY, {"services": [], "http_port": 8080}], ids=["one", "many", "none"])
def test_the_fast_path_prints_what_the_app_prints(
    daemon: tuple[Path, Answer],
    cli: Run,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    body: dict[str, Any],
) -> None:
    """The same answer of GET /v1/status, once through the fast path and the socket, once through
    the Typer app and its httpx client."""
    home, answer = daemon
    answer.set(200, body)
    api.route("GET", "/v1/status", body)
    for name in [k for k in os.environ if k.startswith("SLIPSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLIPSTREAM_HOME", str(home))
    assert fast.run(argv) == 0
    quick = capsys.readouterr()
    full = cli(*argv)
    assert full.exit_code == 0, full.stderr
    assert quick.out == full.stdout and quick.err == ""
    assert answer.requests == 1


LOGS_MORE = {
    "lines": [
        *LOGS["lines"],
        log_line(4, "caf\u00e9 \x1b[31mred\x1b[0m\ttab", instance=None, stream="build"),
        {**log_line(5, "no time"), "time": None, "instance": None},
    ],
    "cursor": 5,
}


@pytest.mark.parametrize(
    ("argv", "query"),
    [
        (["logs", "web"], "n=100"),
        (["logs", "web", "--json"], "n=100"),
        (["logs", "-n", "5", "--json", "web"], "n=5"),
    ],
)
def test_the_fast_path_prints_the_apps_log_lines(
    daemon: tuple[Path, Answer],
    cli: Run,
    api: FakeApi,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    query: str,
) -> None:
    home, answer = daemon
    answer.set(200, LOGS_MORE)
    api.route("GET", "/v1/services/web/logs", LOGS_MORE)
    for name in [k for k in os.environ if k.startswith("SLIPSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLIPSTREAM_HOME", str(home))
    assert fast.run(argv) == 0
    quick = capsys.readouterr()
    full = cli(*argv)
    assert full.exit_code == 0, full.stderr
    assert quick.out == full.stdout and quick.err == ""
    assert answer.path == f"/v1/services/web/logs?{query}" and str(api.requests[-1].url).endswith(query)
    assert f"password={MASK}" in quick.out and "\x1b" not in quick.out


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["logs", "web"], ("web", 100, False)),
        (["logs", "--json", "-n", "0", "api-2.v1_x"], ("api-2.v1_x", 0, True)),
        (["logs", "web", "-f"], None),
        (["logs", "web", "--grep", "x"], None),
        (["logs", "web", "-n5"], None),
        (["logs", "web", "-n", "-1"], None),
        (["logs", "web", "-n"], None),
        (["logs", "web", "api"], None),
        (["logs", "--help"], None),
        (["logs", "wëb"], None),
        (["logs"], None),
        (["status", "web"], None),
    ],
)
def test_logs_args_take_only_the_plain_forms(argv: list[str], parsed: tuple[str, int, bool] | None) -> None:
    assert fast.logs_args(argv) == parsed


@pytest.mark.parametrize(
    ("argv", "body", "shown"),
    [(["status"], MANY, "api-d7-1"), (["status", "--json"], MANY, "api-d7-1"), (["logs", "web"], LOGS, "GET / 200")],
)
def test_status_and_logs_import_no_typer_rich_httpx_or_pydantic(
    daemon: tuple[Path, Answer], argv: list[str], body: dict[str, Any], shown: str
) -> None:
    home, answer = daemon
    answer.set(200, body)
    quick = run(VIA_MAIN, home, *argv)
    assert quick.returncode == 0, quick.stderr
    assert loaded(quick) == []
    assert shown in quick.stdout


def test_other_settings_are_checked_and_still_fast(daemon: tuple[Path, Answer]) -> None:
    home, _ = daemon
    quick = run(VIA_MAIN, home, "status", SLIPSTREAM_HTTP_PORT="8081")
    assert quick.returncode == 0 and "web-d7-1" in quick.stdout
    assert loaded(quick) == ["slipstream.settings"]  # validated by the real settings, still no Typer
    bad = run(VIA_MAIN, home, "status", SLIPSTREAM_HTTP_PORT="eighty")
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: SLIPSTREAM_HTTP_PORT has value 'eighty': not a whole number\n")


def test_errors_are_the_apps_own(daemon: tuple[Path, Answer], tmp_path: Path) -> None:
    home, answer = daemon
    answer.set(503, {"error": "the engine is starting", "hint": "try again in a second"})
    result = run(VIA_MAIN, home, "status")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: the engine is starting\n  try again in a second\n")
    nobody = run(VIA_MAIN, tmp_path / "nohome", "status")
    assert nobody.returncode == 1
    assert nobody.stderr.startswith("Error: slipstream is not running\n  start it with 'slipstream up --detach'\n")


def test_what_the_fast_path_leaves_to_the_app(
    daemon: tuple[Path, Answer], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of these returns False having printed nothing; ``main`` then runs the Typer app."""
    home, answer = daemon
    for name in [k for k in os.environ if k.startswith("SLIPSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLIPSTREAM_HOME", str(home))
    for argv in (["status", "--help"], ["status", "--json", "--json"], ["deploys", "web"], []):
        assert None is fast.run(argv)
    wide = service("wide", None, url="http://" + "w" * 250)  # wider than Rich's 200 columns: Rich wraps it
    for services in ([wide], [service("wëb", None)]):  # beyond ASCII, cell widths are Rich's to measure
        answer.set(200, {"services": services, "http_port": 8080})
        assert None is fast.run(["status"])
    answer.set(200, STATUS)
    monkeypatch.setenv("SLIPSTREAM_API_URL", "http://127.0.0.1:9")
    assert None is fast.run(["status"])  # a remote daemon is the full client's
    monkeypatch.delenv("SLIPSTREAM_API_URL")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert None is fast.run(["status"])  # Rich's forced terminal is not reproduced
    assert capsys.readouterr().out == ""
    assert answer.requests == 3


def rich_table(
    monkeypatch: pytest.MonkeyPatch, columns: tuple[str, ...], rows: list[tuple[str, ...]], width: int, terminal: bool
) -> str:
    """``common.print_table``'s output on a console of this width (a colour terminal or not)."""
    buf = io.StringIO()
    console = Console(file=buf, highlight=False, emoji=False, width=width, force_terminal=terminal)
    monkeypatch.setattr(common, "out", lambda: console)
    common.print_table(columns, rows)
    return buf.getvalue()


def random_cell(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + string.punctuation + "    "
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 3, 12, 40])))


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_plain_tables_match_rich_cell_for_cell(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    rng = random.Random(15)
    drawn = 0
    for _ in range(200):
        columns = tuple(rng.choice(["id", "live deploy", "instances", "x"]) for _ in range(rng.randint(1, 5)))
        rows = [tuple(random_cell(rng) for _ in columns) for _ in range(rng.randint(1, 4))]
        width = rng.choice([30, 80, 200])
        plain = fast.plain_table(columns, rows, width, bold=terminal)
        if plain is None:  # too wide: Rich would wrap
            assert sum(max(len(c), *(len(r[i]) for r in rows)) + 3 for i, c in enumerate(columns)) + 1 > width
            continue
        drawn += 1
        assert plain == rich_table(monkeypatch, columns, rows, width, terminal)
    assert drawn > 50


def test_status_rows_are_the_apps_table(cli: Run, api: FakeApi) -> None:
    api.route("GET", "/v1/status", MANY)
    shown = cli("status").stdout
    assert shown == fast.plain_table(fast.STATUS_COLUMNS, fast.status_rows(MANY), 200, bold=False)
    assert "\\x1b[2J" in shown and "api-d7-1 running/backoff pid=None restarts=0 next restart in 2.2s" in shown


def test_an_error_answer_is_not_printed_by_the_fast_path(cli: Run, api: FakeApi) -> None:
    api.route("GET", "/v1/status", error(500, "boom"))
    assert fast.render_status({"error": "boom"}, as_json=False) is None
    assert cli("status").stderr == "Error: boom\n"


@pytest.mark.parametrize("home", [None, "", "  ", "rel/home", "~/state", "/tmp/../tmp/x"])
def test_the_socket_is_the_settings_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: str | None) -> None:
    for name in [k for k in os.environ if k.startswith("SLIPSTREAM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    if home is not None:
        monkeypatch.setenv("SLIPSTREAM_HOME", home)
    assert fast.api_socket() == str(load_settings().api_socket)
    monkeypatch.setenv("SLIPSTREAM_BIND", "127.0.0.2")
    assert fast.api_socket() is None  # other settings: the full settings check them


def on_a_terminal(code: str, home: Path, **env: str) -> tuple[str, str]:
    """What ``code`` prints on stdout when stdout is a terminal (a pty), and on stderr."""
    leader, follower = pty.openpty()
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), "SLIPSTREAM_HOME": str(home), "LANG": "C.UTF-8"}
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, "status"],
            env={**base, **env},
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
            check=True,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    return b"".join(chunks).decode(), result.stderr.decode()


def test_on_a_terminal_the_fast_path_draws_rich_s_bold_header(daemon: tuple[Path, Answer]) -> None:
    home, _ = daemon
    env = {"TERM": "xterm-256color", "COLUMNS": "150"}
    quick, err = on_a_terminal(VIA_MAIN, home, **env)
    assert err == "[]\n"  # the fast path drew it
    assert "\x1b[1mproject\x1b[0m" in quick
    assert quick == on_a_terminal(VIA_APP, home, **env)[0]
