"""Pure tests of the private listeners: naming, planning, rendering and the port record."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from slipstream.errors import Conflict, InvalidInput
from slipstream.proxy import Route, ServerState, render_config
from slipstream.proxy.config import SLOT_CHECK, listener_name, parse_layout, plan_private, private_names
from slipstream.proxy.private import check_ports, extend_ports, find_free_ports, load_ports, ports_in_config, save_ports


def test_private_names_share_a_width_and_may_be_empty() -> None:
    assert private_names(3) == ["pbe_00", "pbe_01", "pbe_02"]
    assert private_names(0) == []
    assert private_names(101)[-1] == "pbe_100"
    assert listener_name("pbe_07") == "priv_07"
    with pytest.raises(InvalidInput, match="private listener pool size -1"):
        private_names(-1)


def test_plan_private_pins_then_keeps_previous_then_fills() -> None:
    plan = plan_private(["a", "b", "c"], {"b": "pbe_02", "c": "be_00"}, [7001, 7002, 7003], pinned={"a": 7002})
    assert plan == {"a": "pbe_01", "b": "pbe_02", "c": "pbe_00"}


def test_plan_private_skips_taken_and_raises_when_full() -> None:
    assert plan_private(["a"], {"a": "pbe_00"}, [7001, 7002], taken=["pbe_00"]) == {"a": "pbe_01"}
    with pytest.raises(
        Conflict, match="all 2 private service ports of the proxy are in use; cannot route private service c"
    ):
        plan_private(["a", "b", "c"], {}, [7001, 7002])
    with pytest.raises(Conflict, match="all 0 private service ports"):
        plan_private(["a"], {}, [])


def test_plan_private_refuses_an_unknown_or_taken_pinned_port() -> None:
    with pytest.raises(
        Conflict, match="must keep port 9999, which is not one of the proxy's private ports \\(7001, 7002\\)"
    ):
        plan_private(["a"], {}, [7001, 7002], pinned={"a": 9999})
    with pytest.raises(Conflict, match="private port 7001 wanted by service a is already taken"):
        plan_private(["a"], {}, [7001, 7002], taken=["pbe_00"], pinned={"a": 7001})


def render(
    bind_host: str, ports: list[int], routes: Sequence[Route] = (), assignment: dict[str, str] | None = None
) -> str:
    return render_config(
        proxy_dir=Path("/srv/proxy"),
        http_port=8080,
        bind_host=bind_host,
        routes=list(routes),
        assignment=assignment or {},
        pool_size=1,
        slots=2,
        private_ports=ports,
        backup_slots=1,
    )


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "::", "127.0.0.1", "::1"])
def test_private_listeners_bind_loopback_whatever_the_http_address(bind_host: str) -> None:
    layout = parse_layout(render(bind_host, [7001, 7002]))
    assert layout["frontend priv_00"] == ["127.0.0.1:7001"]
    assert layout["frontend priv_01"] == ["127.0.0.1:7002"]
    assert layout["backend pbe_01"] == ["s00", "s01", "b00 backup"]
    assert layout["frontend http"] == [("[" + bind_host + "]" if ":" in bind_host else bind_host) + ":8080"]


def test_private_route_servers_fill_the_slots_of_its_listener() -> None:
    route = Route("db", (), (ServerState("d2-1", 9002, "ready"), ServerState("d1-1", 9001, "drain")), kind="private")
    text = render("0.0.0.0", [7001, 7002], [route], {"db": "pbe_01"})
    section = text[text.index("backend pbe_01") :]
    assert "    server s00 127.0.0.1:9002  # d2-1\n" in section
    assert "    server s01 127.0.0.1:9001 disabled  # d1-1\n" in section
    assert "    server b00 127.0.0.1:1 backup disabled\n" in section
    assert f"    default-server {SLOT_CHECK}\n" in text[text.index("mode tcp") :]
    assert "default_backend pbe_01" in text and "    retries 3\n    option redispatch\n" in section


def test_no_private_ports_render_no_tcp_section() -> None:
    text = render("127.0.0.1", [])
    assert "mode tcp" not in text and "priv_" not in text
    assert ports_in_config(text) is None


def test_ports_are_read_back_from_a_rendered_config() -> None:
    ports = list(range(7001, 7013))  # 12 listeners: names stay in order when sorted
    assert ports_in_config(render("0.0.0.0", ports)) == ports


def test_port_record_round_trip_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "private.json"
    assert load_ports(path) is None
    save_ports(path, [7001, 7002])
    assert path.read_text() == '{"ports": [7001, 7002]}\n'
    assert load_ports(path) == [7001, 7002]
    for broken in ["", "{", '{"ports": 3}', '{"ports": [0]}', '{"other": []}', "[]"]:
        path.write_text(broken)
        assert load_ports(path) is None, broken


def test_check_ports_accepts_a_valid_list() -> None:
    assert check_ports((7001, 7002), 2, 8080) == [7001, 7002]
    assert check_ports([], 0, 8080) == []


def test_free_ports_are_distinct_unbound_and_avoid_what_is_asked() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        ports = find_free_ports(6, avoid=[busy])
    assert len(set(ports)) == 6 and busy not in ports
    for port in ports:  # each one can be bound right now
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_extend_ports_keeps_the_recorded_ones() -> None:
    assert extend_ports([7001, 7002, 7003], 2) == [7001, 7002]
    grown = extend_ports([7001], 3)
    assert grown[0] == 7001 and len(set(grown)) == 3 and 7001 not in grown[1:]
