"""Pure tests of the server slots: planning, naming from records, and the record file."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import Conflict, InvalidInput
from slipstream.proxy import Route, ServerState
from slipstream.proxy.config import plan_slots, slot_names
from slipstream.proxy.parse import ServerRow
from slipstream.proxy.slots import Live, Slot, build_slots, live_records, load_records, save_records


def test_slot_names_share_a_width() -> None:
    assert slot_names(3) == ["s00", "s01", "s02"]
    assert slot_names(101)[0] == "s000" and slot_names(101)[-1] == "s100"
    with pytest.raises(InvalidInput, match="slots per backend 0"):
        slot_names(0)


def test_plan_slots_fills_in_order_and_refuses_too_many() -> None:
    a, b = ServerState("d2-1", 9001, "ready"), ServerState("d1-1", 9000, "drain")
    assert plan_slots([Route("web", (), (a, b)), Route("api", ())], 2) == {"web": {"s00": a, "s01": b}, "api": {}}
    with pytest.raises(Conflict, match="service web has 2 servers but a proxy backend holds at most 1"):
        plan_slots([Route("web", (), (a, b))], 1)


def row(backend: str, slot: str, port: int, admin: str = "ready") -> ServerRow:
    return ServerRow(backend, slot, "127.0.0.1", port, admin)


def test_build_slots_names_slots_the_record_explains() -> None:
    rows = [
        row("be_00", "s00", 9000),
        row("be_00", "s01", 9001, "maint"),
        row("be_00", "s02", 1, "maint"),
        row("be_00", "s03", 9003),
        row("be_01", "s00", 1, "maint"),
        row("other", "s00", 9000),
        row("be_01", "extra", 9000),
    ]
    records = {
        "be_00/s00": ("d1-1", 9000),  # agrees with the live port
        "be_00/s01": ("d2-1", 7777),  # the slot holds another port now
        "be_00/s02": ("d3-1", 9002),  # the slot is free
        "be_00/s03": ("d1-1", 9003),
    }  # a name already taken in that backend
    slots = build_slots(rows, {("be_00", "s00"): 2}, records, ["be_00", "be_01"], ["s00", "s01", "s02", "s03"])
    assert slots == {
        "be_00": [
            Slot("be_00", "s00", ServerState("d1-1", 9000, "ready", 2)),
            Slot("be_00", "s01", ServerState("s01", 9001, "maint")),
            Slot("be_00", "s02", None),
            Slot("be_00", "s03", ServerState("s03", 9003, "ready")),
        ],
        "be_01": [Slot("be_01", "s00", None)],
    }
    live = Live({"web": "be_00"}, {}, slots)
    assert [s.name for s in live.servers_of("be_00")] == ["d1-1", "s01", "s03"]
    assert live.free_slot("be_00") == "s02" and live.free_slot("be_01") == "s00"
    assert live.find("be_00", "d1-1") == slots["be_00"][0] and live.find("be_00", "d3-1") is None
    assert live.occupied() == {"be_00"}
    assert live_records(live) == {"be_00/s00": ("d1-1", 9000)}


def test_records_round_trip_and_tolerate_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "backends.json"
    assert load_records(path) == ({}, {})
    save_records(path, {"web": "be_00"}, {"be_00/s01": ("d1-1", 9000)})
    assert load_records(path) == ({"web": "be_00"}, {"be_00/s01": ("d1-1", 9000)})
    path.write_text('{"services": {"web": "be_00"}}')  # written before slots existed
    assert load_records(path) == ({"web": "be_00"}, {})
    path.write_text('{"slots": {"be_00/s01": {"name": "d1-1"}}}')
    assert load_records(path) == ({}, {})
