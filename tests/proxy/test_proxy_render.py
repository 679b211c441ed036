"""Golden tests for the rendered HAProxy files, backend planning and input validation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from slipstream.errors import Conflict, InvalidInput
from slipstream.proxy import Route, ServerState, render_config, render_hosts_map, render_services_map
from slipstream.proxy.config import backend_names, plan_backends, plan_private, render_bind

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.cfgtest"))
SEP = "-" * 10 + " "


def load_case(path: Path) -> tuple[dict, dict[str, str]]:
    """A golden file: JSON input, then sections '---------- <file name>' with expected text."""
    sections: list[list[str]] = [["input"]]
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith(SEP):
            sections.append([line[len(SEP) :].strip()])
        else:
            sections[-1].append(line)
    bodies = {s[0]: "".join(s[1:]) for s in sections}
    return json.loads(bodies.pop("input")), bodies


def build(case: dict, proxy_dir: Path) -> dict[str, str]:
    routes = [
        Route(
            r["service"],
            tuple(r["hosts"]),
            tuple(ServerState(**s) for s in r["servers"]),
            kind=r.get("kind", "http"),
            port=r.get("port"),
        )
        for r in case["routes"]
    ]
    ports = case.get("private_ports", [])
    assignment = plan_backends([r.service for r in routes if r.kind == "http"], case["previous"], case["pool_size"])
    assignment |= plan_private(
        [r.service for r in routes if r.kind == "private"],
        case["previous"],
        ports,
        pinned={r.service: r.port for r in routes if r.port},
    )
    return {
        "haproxy.cfg": render_config(
            proxy_dir=proxy_dir,
            http_port=case["http_port"],
            bind_host=case["bind_host"],
            routes=routes,
            assignment=assignment,
            pool_size=case["pool_size"],
            private_ports=ports,
            **({"slots": case["slots"]} if "slots" in case else {}),
            **({"backup_slots": case["backup_slots"]} if "backup_slots" in case else {}),
        ),
        "hosts.map": render_hosts_map(routes, assignment),
        "services.map": render_services_map(assignment),
    }


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden(path: Path) -> None:
    case, expected = load_case(path)
    assert build(case, Path("/srv/slipstream/proxy")) == expected


def test_golden_files_exist() -> None:
    assert {p.stem for p in GOLDEN} >= {"empty", "routes", "ipv6"}


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_rendered_config_is_valid_for_haproxy(path: Path, tmp_path: Path) -> None:
    case, _ = load_case(path)
    for name, text in build(case, tmp_path).items():
        (tmp_path / name).write_text(text)
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_backend_names_share_a_width() -> None:
    assert backend_names(3) == ["be_00", "be_01", "be_02"]
    assert backend_names(101)[-1] == "be_100" and backend_names(101)[0] == "be_000"
    with pytest.raises(InvalidInput):
        backend_names(0)


def test_plan_keeps_previous_backend_and_fills_lowest_free() -> None:
    plan = plan_backends(["web", "api", "docs"], {"api": "be_02", "gone": "be_00"}, 4)
    assert plan == {"api": "be_02", "web": "be_00", "docs": "be_01"}


def test_plan_skips_taken_and_unknown_previous() -> None:
    plan = plan_backends(["web", "api"], {"web": "be_01", "api": "be_99"}, 3, taken=["be_01"])
    assert plan == {"web": "be_00", "api": "be_02"}


def test_plan_raises_conflict_when_the_pool_is_full() -> None:
    with pytest.raises(Conflict, match="all 2 proxy backends are in use; cannot route service c"):
        plan_backends(["a", "b", "c"], {}, 2)


def test_render_bind() -> None:
    assert render_bind("127.0.0.1", 80) == "127.0.0.1:80"
    assert render_bind("::1", 8080) == "[::1]:8080"
    with pytest.raises(InvalidInput, match="not an IP address"):
        render_bind("localhost", 80)


def test_route_lowercases_hosts() -> None:
    assert Route("web", ("Web.LocalHost",)).hosts == ("web.localhost",)


@pytest.mark.parametrize(
    ("build_it", "message"),
    [
        (lambda: Route("my app", ()), "service name 'my app' is not valid"),
        (lambda: Route("web;x", ()), "service name 'web;x' is not valid"),
        (lambda: Route("web", ("web.localhost:8080",)), "host 'web.localhost:8080' is not a host name"),
        (lambda: Route("web", ("http://web.localhost",)), "is not a host name"),
        (lambda: Route("web", ("*.example.com",)), "is not a host name"),
        (lambda: Route("web", ("",)), "host '' is not a host name"),
        (lambda: Route("web", ("a.localhost", "A.localhost")), "names a host twice"),
        (lambda: ServerState("d1 1", 9000, "ready"), "server name 'd1 1' is not valid"),
        (lambda: ServerState("d1-1", 0, "ready"), "port of server d1-1 0 is not a TCP port"),
        (lambda: ServerState("d1-1", 70000, "ready"), "is not a TCP port"),
        (lambda: ServerState("d1-1", 9000, "up"), "state 'up' is not one of ready, drain, maint"),
        (
            lambda: Route("web", (), (ServerState("a", 1, "ready"), ServerState("a", 2, "ready"))),
            "names a server twice",
        ),
        (
            lambda: Route("db", ("db.localhost",), kind="private"),
            "private route for db names hosts \\(db.localhost\\); a private service has only a port",
        ),
        (lambda: Route("web", ("web.localhost",), port=9000), "http route for web has a port"),
        (lambda: Route("db", (), kind="private", port=0), "private port of db 0 is not a TCP port"),
        (lambda: Route("db", (), kind="tcp"), "route kind 'tcp' of db is not one of http, private"),
    ],
)
def test_invalid_input_is_rejected_with_a_clear_message(build_it, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("*", r"\*").replace("'", "'")):
        build_it()


@pytest.mark.parametrize("name", ["web\n", "web\nbe_01", "d1-1\n"])
def test_names_end_at_the_end_of_the_string_not_before_a_newline(name: str) -> None:
    from slipstream.proxy.model import check_server_name, check_service

    with pytest.raises(InvalidInput):
        check_service(name)
    with pytest.raises(InvalidInput):
        check_server_name(name)
