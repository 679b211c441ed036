"""The admin-socket client and the parsers of HAProxy's answers (replies captured from 2.6.12)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from slipstream.errors import CommandFailed, InvalidInput, Unavailable
from slipstream.proxy.admin import AdminClient, build_line, check_answers, is_success, parse_answers
from slipstream.proxy.parse import admin_from_mask, parse_map, parse_servers_state, parse_stat_sessions

HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port"
)


@pytest.mark.parametrize(
    ("reply", "answers"),
    [
        ("\n", [""]),  # set server ... (ok)
        ("No such server.\n\n", ["No such server."]),
        ("\nNo such server.\n\n\n", ["", "No such server.", ""]),  # 3 commands, middle failed
        ("New server registered.\n\n\n", ["New server registered.", ""]),
        ("\nServer deleted.\n", ["", "Server deleted."]),  # del server: no empty line
        ("Only servers in maintenance mode can be deleted.\n", ["Only servers in maintenance mode can be deleted."]),
        (
            "0x55 web.localhost be_00\n0x56 api.localhost be_01\n\n\n",
            ["0x55 web.localhost be_00\n0x56 api.localhost be_01", ""],
        ),
        ("", []),
    ],
)
def test_parse_answers(reply: str, answers: list[str]) -> None:
    assert parse_answers(reply) == answers


def test_check_answers_accepts_known_successes() -> None:
    check_answers(
        [
            "set server be_00/s00 addr 127.0.0.1 port 41001",
            "set server be_00/s00 state ready",
            "add map /p/hosts.map a be_00",
        ],
        ["no need to change the addr, port changed from '1' to '41001' by 'stats socket command'", "", ""],
    )


@pytest.mark.parametrize(
    "answer",
    [
        "no need to change the addr, port changed from '41001' to '1' by 'stats socket command'",
        "no need to change the addr, no need to change the port by 'stats socket command'",
        "IP changed from '127.0.0.2' to '127.0.0.1', no need to change the port by 'stats socket command'",
        "IP changed from '127.0.0.2' to '127.0.0.1', port changed from '1' to '9' by 'stats socket command'",
    ],
)
def test_addr_change_reports_are_successes(answer: str) -> None:
    assert is_success(answer)


@pytest.mark.parametrize(
    "answer", ["No such server.", "Require 'backend/server'.", "Invalid addr", "port changed from '1'"]
)
def test_refusals_are_not_successes(answer: str) -> None:
    assert not is_success(answer)


def test_check_answers_names_the_refused_command() -> None:
    with pytest.raises(CommandFailed, match="refused 'set server be_00/b state drain': No such"):
        check_answers(["set server be_00/a state ready", "set server be_00/b state drain"], ["", "No such server."])


def test_check_answers_rejects_a_missing_answer() -> None:
    with pytest.raises(CommandFailed, match="1 answers to 2 commands"):
        check_answers(["set server be_00/a state ready", "set server be_00/b state drain"], [""])


def test_build_line_joins_and_escapes() -> None:
    assert build_line(["show info", "add map x k v;w"]) == b"show info; add map x k v\\;w\n"
    with pytest.raises(InvalidInput):
        build_line(["show info\nshow stat"])
    with pytest.raises(InvalidInput):
        build_line([])


def fake_socket(path: Path, reply: bytes) -> tuple[threading.Thread, list[bytes]]:
    """A one-shot unix server: records the line it receives, answers ``reply`` and closes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        with server:
            server.settimeout(5)
            conn, _ = server.accept()
            with conn:
                received.append(conn.recv(65536))
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, received


def test_client_sends_one_line_and_splits_answers(tmp_path: Path) -> None:
    thread, received = fake_socket(tmp_path / "s.sock", b"\nNo such server.\n\n")
    client = AdminClient(tmp_path / "s.sock")
    with pytest.raises(CommandFailed, match="refused 'set server be_00/y state drain'"):
        client.send(["set server be_00/x state ready", "set server be_00/y state drain"])
    thread.join(5)
    assert received == [b"set server be_00/x state ready; set server be_00/y state drain\n"]


def test_client_returns_query_answers_unchecked(tmp_path: Path) -> None:
    thread, _ = fake_socket(tmp_path / "s.sock", b"0x1 a.localhost be_00\n\n")
    assert AdminClient(tmp_path / "s.sock").send(["show map x"], check=False) == ["0x1 a.localhost be_00"]
    thread.join(5)


def test_client_raises_unavailable_without_socket(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="haproxy is not answering on"):
        AdminClient(tmp_path / "missing.sock").send(["show info"])


@pytest.mark.parametrize(
    ("mask", "admin"),
    [
        (0, "ready"),
        (1, "maint"),
        (5, "maint"),
        (4, "ready"),  # 4: config 'disabled', then ready
        (8, "drain"),
        (12, "drain"),
        (9, "maint"),
        (0x10, "drain"),
        (0x20, "maint"),
        (0x40, "ready"),
    ],
)
def test_admin_from_mask(mask: int, admin: str) -> None:
    assert admin_from_mask(mask) == admin


def test_parse_servers_state() -> None:
    text = (
        "1\n" + HEADER + "\n"
        "4 be_00 1 d12-1 127.0.0.1 2 0 1 1 0 1 0 0 0 0 0 0 - 41001 - 0 0 - - 0\n"
        "4 be_00 2 d11-1 127.0.0.1 2 8 1 1 0 1 0 0 0 0 0 0 - 40001 - 0 0 - - 0\n"
        "5 be_01 1 d3-1 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 42001 - 0 0 - - 0\n"
    )
    rows = parse_servers_state(text)
    assert [(r.backend, r.name, r.port, r.admin) for r in rows] == [
        ("be_00", "d12-1", 41001, "ready"),
        ("be_00", "d11-1", 40001, "drain"),
        ("be_01", "d3-1", 42001, "maint"),
    ]


def test_parse_servers_state_rejects_an_error_answer() -> None:
    with pytest.raises(CommandFailed, match="unexpected answer to 'show servers state'"):
        parse_servers_state("Can't find backend.")


def test_parse_stat_sessions_keeps_server_rows() -> None:
    text = (
        "# pxname,svname,qcur,qmax,scur,smax,slim\nbe_00,d12-1,0,0,3,5,\nbe_00,BACKEND,0,0,3,5,\nbe_01,d3-1,0,0,0,0,\n"
    )
    assert parse_stat_sessions(text) == {("be_00", "d12-1"): 3, ("be_01", "d3-1"): 0}


def test_parse_map() -> None:
    assert parse_map("0x5597 web.localhost be_00\n0x5598 api.localhost be_01") == {
        "web.localhost": "be_00",
        "api.localhost": "be_01",
    }
    assert parse_map("") == {}
    with pytest.raises(CommandFailed):
        parse_map("Unknown map identifier. Please use #<id> or <file>.")
