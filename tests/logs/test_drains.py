from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slipstream.logs.drains import Drains, DrainSpec, HttpDrain, MemoryDrain, SyslogDrain, frame, render_syslog
from slipstream.logs.model import Level, LogLine, LogsError, Source, Stream
from slipstream.logs.pipeline import LogPipeline
from slipstream.logs.store import LogStore

from .drain_servers import HttpCollector, SyslogServer, self_signed

T0 = 1_796_000_000.25


def lines(n: int, service: str = "web", start: int = 0) -> list[LogLine]:
    return [
        LogLine(T0 + i, service, Stream.APP, f"line {i}", 3, f"{service}-d3-1", Level.INFO, seq=i + 1)
        for i in range(start, start + n)
    ]


def wait(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def closing() -> Iterator[list[object]]:
    """Things to close at the end (drains and servers), last first."""
    items: list[object] = []
    yield items
    for x in reversed(items):
        x.close()  # type: ignore[attr-defined]


def test_render_syslog_is_rfc5424() -> None:
    line = LogLine(T0, "web", Stream.APP, 'ERROR db "down"]', 12, "web-d12-1", Level.ERROR, seq=99)
    assert (
        render_syslog(line, "host-1")
        == b'<11>1 2026-11-30T00:53:20.250000Z host-1 web web-d12-1 app [slipstream@32473 seq="99" deploy="12"] ERROR db "down"]'
    )
    event = LogLine(T0, "", Stream.EVENT, "daemon started")
    assert (
        render_syslog(event, "my host")
        == b"<14>1 2026-11-30T00:53:20.250000Z myhost slipstream - platform - daemon started"
    )
    assert frame(b"abc") == b"3 abc"


@pytest.mark.parametrize(
    "kw, message",
    [
        (
            dict(url="ftp://x"),
            "log drain 'd': url must start with syslog://, syslog+tls://, http:// or https://, got 'ftp://x'",
        ),
        (dict(url="syslog://logs.example.com"), "log drain 'd': a syslog url needs a port"),
        (dict(url="https://"), "log drain 'd': url 'https://' names no host"),
        (dict(url="syslog://h:514", headers={"a": "b"}), "log drain 'd': headers apply to http(s) drains only"),
        (dict(url="https://h/", batch=0), "log drain 'd': batch must be between 1 and max_queue (10000), got 0"),
    ],
)
def test_drain_spec_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(LogsError) as err:
        DrainSpec("d", **kw)  # type: ignore[arg-type]
    assert str(err.value).startswith(message)


def test_syslog_over_tcp(closing: list[object]) -> None:
    server = SyslogServer()
    closing.append(server)
    d = SyslogDrain(DrainSpec("s", f"syslog://127.0.0.1:{server.port}", hostname="h"))
    closing.append(d)
    d.offer(lines(3))
    wait(lambda: len(server.messages) == 3)
    assert (
        server.messages[0]
        == '<14>1 2026-11-30T00:53:20.250000Z h web web-d3-1 app [slipstream@32473 seq="1" deploy="3"] line 0'
    )
    assert d.stats().sent == 3


def test_syslog_over_tls(tmp_path: Path, closing: list[object]) -> None:
    cert = self_signed(tmp_path)
    server = SyslogServer(tls=cert)
    closing.append(server)
    d = SyslogDrain(DrainSpec("s", f"syslog+tls://127.0.0.1:{server.port}", ca_file=cert[0], hostname="h"))
    closing.append(d)
    d.offer(lines(2))
    wait(lambda: len(server.messages) == 2)
    assert server.messages[1].endswith("line 1")


def test_tls_refuses_an_untrusted_server(tmp_path: Path, closing: list[object]) -> None:
    server = SyslogServer(tls=self_signed(tmp_path))
    closing.append(server)
    d = SyslogDrain(DrainSpec("s", f"syslog+tls://127.0.0.1:{server.port}", backoff_s=0.05))
    closing.append(d)
    d.offer(lines(1))
    wait(lambda: d.stats().failures >= 1)
    assert server.messages == [] and "CERTIFICATE_VERIFY_FAILED" in (d.stats().last_error or "")


def test_http_json_batches_with_headers(closing: list[object]) -> None:
    server = HttpCollector()
    closing.append(server)
    d = HttpDrain(
        DrainSpec("h", f"http://127.0.0.1:{server.port}/ingest", headers={"authorization": "Bearer t0k3n"}, batch=2)
    )
    closing.append(d)
    d.offer(lines(5))
    wait(lambda: len(server.lines) == 5)
    assert [len(b) for b in server.batches] == [2, 2, 1]
    assert server.lines[0] == {
        "seq": 1, "time": "2026-11-30T00:53:20.250000Z", "service": "web", "stream": "app", "deploy": 3,
        "instance": "web-d3-1", "build": None, "level": "info", "message": "line 0", "fields": None,
    }  # fmt: skip
    assert server.headers[0]["authorization"] == "Bearer t0k3n"
    assert server.headers[0]["content-type"] == "application/json"


def test_http_retries_server_errors_and_drops_refused_batches(closing: list[object]) -> None:
    server = HttpCollector()
    closing.append(server)
    d = HttpDrain(DrainSpec("h", f"http://127.0.0.1:{server.port}/", backoff_s=0.02, max_backoff_s=0.05))
    closing.append(d)
    server.status = 503
    d.offer(lines(2))
    wait(lambda: d.stats().failures >= 2)
    server.status = 200
    wait(lambda: len(server.lines) == 2)
    server.status = 400
    d.offer(lines(3, start=2))
    wait(lambda: d.stats().rejected == 3)
    s = d.stats()
    assert (s.sent, s.rejected, s.queued, s.last_error) == (2, 3, 0, "HTTP 400")


def test_a_stopped_server_costs_drops_not_blocking(closing: list[object]) -> None:
    server = SyslogServer()
    port = server.port
    d = SyslogDrain(
        DrainSpec(
            "s", f"syslog://127.0.0.1:{port}", max_queue=1000, batch=100, backoff_s=0.05, max_backoff_s=0.1, timeout_s=1
        )
    )
    closing.append(d)
    d.offer(lines(10))
    wait(lambda: len(server.messages) == 10)
    server.close()
    started = time.perf_counter()
    for k in range(20):
        d.offer(lines(1000, start=10 + k * 1000))
    spent = time.perf_counter() - started
    # sending them would take 200 batches, each at least one back-off (>= 0.05 s): >= 10 s; offering
    # only queues or drops, well under that however loaded the machine is
    assert spent < 3, f"offering 20,000 lines took {spent:.3f} s"
    s = d.stats()
    in_flight = 20_010 - (s.sent + s.dropped + s.queued)  # every line is accounted for
    assert s.queued <= 1000 and 0 <= in_flight <= 100
    again = SyslogServer(port=port)  # the endpoint comes back: the newest lines get through
    closing.append(again)
    wait(lambda: any(m.endswith("line 20009") for m in again.messages), timeout=15)


def test_per_service_and_global_drains(closing: list[object]) -> None:
    only_api = MemoryDrain(DrainSpec("api", "http://127.0.0.1/", services=frozenset({"api"})))
    everything = MemoryDrain()
    drains = Drains([only_api, everything])
    closing.append(drains)
    drains.offer(lines(2, "web") + lines(1, "api"))
    wait(lambda: len(everything.received) == 3 and len(only_api.received) == 1)
    assert [x.service for x in only_api.received] == ["api"]


def test_drains_set_keeps_unchanged_and_replaces_changed(closing: list[object]) -> None:
    drains = Drains()
    closing.append(drains)
    a = DrainSpec("a", "http://127.0.0.1:9/")
    drains.set([a, DrainSpec("b", "syslog://127.0.0.1:9")])
    first = drains._drains["a"]
    drains.set([a, DrainSpec("b", "syslog://127.0.0.1:10")])
    assert drains._drains["a"] is first and drains._drains["b"].spec.url.endswith(":10")
    drains.set([])
    assert not drains


def test_the_pipeline_stores_and_drains_masked_lines_without_waiting(tmp_path: Path, closing: list[object]) -> None:
    store = LogStore(tmp_path / "logs.db")
    closing.append(store)
    store.masker.add(["sup3r-s3cret-value"])
    dead = SyslogDrain(DrainSpec("dead", "syslog://127.0.0.1:9", max_queue=500, timeout_s=1, backoff_s=0.05))
    alive = MemoryDrain(DrainSpec("alive", "http://127.0.0.1/", max_queue=50_000))
    p = LogPipeline(store, drains=Drains([dead, alive]))
    log = tmp_path / "web-d1-1.log"
    log.write_text("".join(f"line {i} sup3r-s3cret-value\n" for i in range(20_000)))
    p.watch(log, Source("web", Stream.APP, 1, "web-d1-1"))
    started = time.perf_counter()
    while p.cycle():
        pass
    spent = time.perf_counter() - started
    assert store.stats()["lines"] == 20_000
    assert spent < 10
    assert dead.stats().dropped >= 19_000
    wait(lambda: len(alive.received) == 20_000)
    assert all("sup3r" not in x.message for x in alive.received[:100])
    p.stop(grace_s=0.5)
