from __future__ import annotations

import base64
import random
import sqlite3
import urllib.parse
import zlib
from pathlib import Path

import pytest

from slipstream.logs.block import Batch, decode, decompress, encode
from slipstream.logs.grep import terms_for
from slipstream.logs.index import condition
from slipstream.logs.mask import LogMasker
from slipstream.logs.model import Grep, Level, LogLine, LogQuery, Source, Stream
from slipstream.logs.parse import detect_level
from slipstream.logs.store import LogStore, Retention
from slipstream.secrets import MASK

T0 = 1_796_000_000.0


def line(
    i: int,
    msg: str,
    service: str = "web",
    stream: Stream = Stream.APP,
    deploy: int | None = 1,
    instance: str | None = "web-d1-1",
    build: int | None = None,
) -> LogLine:
    return LogLine(T0 + i, service, stream, msg, deploy, instance, detect_level(msg), build)


def fill(store: LogStore) -> None:
    store.append(
        [
            line(0, "INFO booting"),
            line(1, "WARN slow start"),
            line(2, "ERROR connection refused"),
            line(3, '{"level":"error","msg":"ReadTimeout on /api","path":"/api"}'),
            line(4, "INFO request timed out after 30s", deploy=2, instance="web-d2-1"),
            line(5, "step 1/3: pip install", stream=Stream.BUILD, deploy=None, instance=None, build=7),
            line(6, "INFO worker up", service="worker", instance="worker-d1-1"),
            line(7, "plain text without a level", deploy=2, instance="web-d2-2"),
        ]
    )


def messages(lines: list[LogLine]) -> list[str]:
    return [x.message for x in lines]


@pytest.mark.parametrize(
    "query, expected",
    [
        (
            LogQuery(service="web", streams=frozenset({Stream.APP})),
            [
                "INFO booting",
                "WARN slow start",
                "ERROR connection refused",
                '{"level":"error","msg":"ReadTimeout on /api","path":"/api"}',
                "INFO request timed out after 30s",
                "plain text without a level",
            ],
        ),
        (
            LogQuery(service="web", limit=2),
            ["INFO request timed out after 30s", "step 1/3: pip install", "plain text without a level"][-2:],
        ),
        (LogQuery(service="worker"), ["INFO worker up"]),
        (
            LogQuery(service="web", level=Level.WARN),
            [
                "WARN slow start",
                "ERROR connection refused",
                '{"level":"error","msg":"ReadTimeout on /api","path":"/api"}',
            ],
        ),
        (
            LogQuery(service="web", level=Level.ERROR, deploy_id=1),
            ["ERROR connection refused", '{"level":"error","msg":"ReadTimeout on /api","path":"/api"}'],
        ),
        (LogQuery(service="web", deploy_id=2), ["INFO request timed out after 30s", "plain text without a level"]),
        (LogQuery(service="web", instance="web-d2-2"), ["plain text without a level"]),
        (LogQuery(service="web", streams=frozenset({Stream.BUILD})), ["step 1/3: pip install"]),
        (LogQuery(service="web", build_id=7), ["step 1/3: pip install"]),
        (
            LogQuery(since=T0 + 2, until=T0 + 4),
            [
                "ERROR connection refused",
                '{"level":"error","msg":"ReadTimeout on /api","path":"/api"}',
                "INFO request timed out after 30s",
            ],
        ),
        (LogQuery(grep=Grep("timeout")), ['{"level":"error","msg":"ReadTimeout on /api","path":"/api"}']),
        (LogQuery(grep=Grep("TIMED OUT")), ["INFO request timed out after 30s"]),
        (LogQuery(grep=Grep.parse("/time(out|d)/")), ["INFO request timed out after 30s"]),
        (
            LogQuery(grep=Grep.parse("/time(out|d)/i")),
            ['{"level":"error","msg":"ReadTimeout on /api","path":"/api"}', "INFO request timed out after 30s"],
        ),
        (LogQuery(grep=Grep.parse("/\\d+s$/")), ["INFO request timed out after 30s"]),
        (LogQuery(grep=Grep("1/3")), ["step 1/3: pip install"]),
        (LogQuery(grep=Grep("nothing like this")), []),
        (LogQuery(service="nobody"), []),
    ],
)
def test_search_filters(store: LogStore, query: LogQuery, expected: list[str]) -> None:
    fill(store)
    assert messages(store.search(query)) == expected


def test_lines_come_back_tagged_with_fields_and_cursors(store: LogStore) -> None:
    fill(store)
    got = store.search(LogQuery(service="web", grep=Grep("ReadTimeout")))
    assert len(got) == 1
    x = got[0]
    assert (x.ts, x.service, x.stream, x.deploy_id, x.instance, x.level) == (
        T0 + 3,
        "web",
        Stream.APP,
        1,
        "web-d1-1",
        Level.ERROR,
    )
    assert x.fields == {"level": "error", "msg": "ReadTimeout on /api", "path": "/api"}
    assert x.seq is not None and x.to_dict()["time"] == "2026-11-30T00:53:23.000000Z"


def test_paging_backwards_and_forwards_by_cursor(store: LogStore) -> None:
    store.append([line(i, f"line {i}") for i in range(50)])
    last = store.search(LogQuery(service="web", limit=10))
    assert messages(last) == [f"line {i}" for i in range(40, 50)]
    before = store.search(LogQuery(service="web", limit=10, before=last[0].seq))
    assert messages(before) == [f"line {i}" for i in range(30, 40)]
    after = store.search(LogQuery(service="web", limit=5, after=before[0].seq))
    assert messages(after) == [f"line {i}" for i in range(31, 36)]


def test_follow_moves_past_lines_that_do_not_match(store: LogStore) -> None:
    q = LogQuery(service="web", grep=Grep("needle"))
    got, cursor = store.follow(q, 0)
    assert (got, cursor) == ([], 0)
    store.append([line(0, "hay"), line(1, "needle 1"), line(2, "hay")])
    got, cursor = store.follow(q, cursor)
    assert messages(got) == ["needle 1"] and cursor == store.last_seq()
    store.append([line(3, "hay")])
    got, cursor2 = store.follow(q, cursor)
    assert got == [] and cursor2 == store.last_seq() > cursor
    store.append([line(4, "needle 2"), line(5, "needle 3")])
    got, _ = store.follow(q, cursor2)
    assert messages(got) == ["needle 2", "needle 3"]


def test_follow_spans_deploys_and_instances(store: LogStore) -> None:
    q = LogQuery(service="web")
    cursor = store.last_seq()
    store.append([line(0, "old release", deploy=1, instance="web-d1-1")])
    store.append(
        [
            line(1, "new release", deploy=2, instance="web-d2-1"),
            line(2, "second instance", deploy=2, instance="web-d2-2"),
        ]
    )
    got, cursor = store.follow(q, cursor)
    assert [(x.deploy_id, x.instance, x.message) for x in got] == [
        (1, "web-d1-1", "old release"),
        (2, "web-d2-1", "new release"),
        (2, "web-d2-2", "second instance"),
    ]


def test_follow_pages_when_more_than_limit_arrived(store: LogStore) -> None:
    store.append([line(i, f"l{i}") for i in range(25)])
    got, cursor = store.follow(LogQuery(limit=10), 0)
    assert messages(got) == [f"l{i}" for i in range(10)] and cursor == got[-1].seq
    got, cursor = store.follow(LogQuery(limit=10), cursor)
    assert messages(got) == [f"l{i}" for i in range(10, 20)]


def test_multiline_messages_become_lines_and_big_batches_split_into_blocks(store: LogStore) -> None:
    store.append([line(0, "first\nsecond\r\nthird")])
    assert messages(store.search(LogQuery())) == ["first", "second", "third"]
    store.append([line(1, f"bulk {i}") for i in range(3000)])
    assert store.stats()["blocks"] >= 4
    assert messages(store.search(LogQuery(limit=3))) == ["bulk 2997", "bulk 2998", "bulk 2999"]
    assert messages(store.search(LogQuery(grep=Grep("bulk 1500")))) == ["bulk 1500"]


def test_iter_search_streams_every_match(store: LogStore) -> None:
    store.append([line(i, f"x {i}") for i in range(2500)])
    it = store.iter_search(LogQuery(grep=Grep("x 1")), newest_first=False)
    first = [next(it).message for _ in range(3)]
    assert first == ["x 1", "x 10", "x 11"]
    assert sum(1 for _ in it) == 1111 - 3


def test_sequence_numbers_survive_a_reopen_and_a_full_prune(tmp_path: Path) -> None:
    s = LogStore(tmp_path / "l.db", retention=Retention(max_age_s=1))
    s.append([line(i, "x") for i in range(10)])
    s.prune(now=T0 + 1000)
    assert s.stats()["lines"] == 0
    s.close()
    s = LogStore(tmp_path / "l.db")
    assert s.last_seq() == 10
    s.append([line(0, "y")])
    assert s.search(LogQuery())[0].seq == 11
    s.close()


def test_prune_by_age_deletes_old_blocks_and_index_epochs(tmp_path: Path) -> None:
    now = [T0]
    store = LogStore(tmp_path / "l.db", clock=lambda: now[0])  # 7 days; an index epoch a day
    for day in range(10):
        now[0] = T0 + day * 86400
        store.append([line(day * 86400 + i, f"day {day} line {i}") for i in range(100)])
    result = store.prune(now=T0 + 10 * 86400)
    assert result.lines == 300
    left = store.search(LogQuery(limit=10_000))
    assert left[0].message == "day 3 line 0" and len(left) == 700
    assert store.search(LogQuery(grep=Grep("day 1 line"))) == []
    assert len(store.search(LogQuery(grep=Grep("day 5 line"), limit=1000))) == 100
    with sqlite3.connect(store.path) as db:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE name GLOB 'words_*[0-9]'")}
    assert tables == {f"words_{k}" for k in range(4, 11)}  # the first three days' index is gone
    store.close()


def fill_random(s: LogStore, batches: int, prune: bool) -> None:
    rnd = random.Random(7)
    for batch in range(batches):  # poorly compressible lines, ~200 kB a batch
        s.append(
            [line(batch * 1000 + i, f"{rnd.getrandbits(128):032x} {rnd.getrandbits(128):032x}") for i in range(1000)]
        )
        if prune:
            s.prune(now=T0)


def test_prune_by_size_keeps_the_file_bounded(tmp_path: Path) -> None:
    limit = 2 << 20
    s = LogStore(tmp_path / "l.db", retention=Retention(max_bytes=limit))
    fill_random(s, 40, prune=True)  # 4x the limit
    assert s.used_bytes() <= limit
    assert (tmp_path / "l.db").stat().st_size <= limit * 1.2  # free pages are reused
    newest = s.search(LogQuery(limit=1))[0]
    assert newest.ts == T0 + 39 * 1000 + 999  # the newest lines stay
    assert 5_000 < s.stats()["lines"] < 40_000
    assert s.search(LogQuery(grep=Grep(newest.message[:20])))[0].seq == newest.seq
    s.close()


def test_a_lower_limit_shrinks_the_file(tmp_path: Path) -> None:
    s = LogStore(tmp_path / "l.db", retention=Retention(max_bytes=8 << 20))
    fill_random(s, 30, prune=False)
    before = s.file_bytes()
    s.close()
    s = LogStore(tmp_path / "l.db", retention=Retention(max_bytes=2 << 20))
    s.prune(now=T0)
    after = s.file_bytes()  # the database and its (checkpointed, truncated) log
    s.close()
    assert before > 5 << 20 and after <= (2 << 20) * 1.1


SECRET = "hunter2-Pa55/word+x"


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        base64.b64encode(b"admin:" + SECRET.encode()).decode(),
    ],
    ids=["plain", "quote", "quote_plus", "base64", "urlsafe-unpadded", "inside-base64"],
)
def test_no_form_of_a_secret_reaches_the_file(tmp_path: Path, form: str) -> None:
    masker = LogMasker()
    masker.add([SECRET])
    s = LogStore(tmp_path / "l.db", masker)
    s.append([line(0, f"connecting with {form} now"), line(1, "other line")])
    s.append([LogLine(T0, "web", Stream.ACCESS, "GET /", fields={"q": f"?token={form}", "n": [form]})])
    got = s.search(LogQuery(grep=Grep("connecting")))
    assert messages(got) == [f"connecting with {MASK} now"] or MASK in got[0].message
    fields = s.search(LogQuery(streams=frozenset({Stream.ACCESS})))[0].fields
    assert fields is not None and form not in str(fields) and MASK in fields["q"]
    s.close()
    inner = base64.b64encode(b"\0" + SECRET.encode())[4:-4]  # a piece of every encoding
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        for needle in (SECRET.encode(), form.encode(), inner):
            assert needle not in data, f"{needle!r} in {f.name}"
    db = sqlite3.connect(tmp_path / "l.db")
    for payload, fields_json in db.execute("SELECT data, fields FROM blocks"):
        text = decompress(payload) + (fields_json or "").encode()
        assert SECRET.encode() not in text and form.encode() not in text
    terms = terms_for(Grep("hunter2"))
    assert terms is not None
    sql, args = condition(db, terms)
    assert db.execute(f"SELECT count(*) FROM blocks WHERE {sql}", args).fetchone() == (0,)
    db.close()


def test_schema_version_is_checked(tmp_path: Path) -> None:
    LogStore(tmp_path / "l.db").close()
    db = sqlite3.connect(tmp_path / "l.db")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(Exception, match="schema 99"):
        LogStore(tmp_path / "l.db")


def test_sources_round_trip() -> None:
    s = Source("web", Stream.PRE_DEPLOY, 3, "web-d3-predeploy", None)
    assert Source.from_json(s.to_json()) == s


def test_blocks_are_zstd_and_a_zlib_block_from_before_still_reads() -> None:
    batch = Batch(Source("web", Stream.APP, 3, "web-d3-1"))
    batch.add(T0, "first line", Level.INFO)
    batch.add(T0 + 1, "second line", fields={"k": "v"})
    text = "\n".join(batch.messages)
    payload, fields = encode(batch, text)
    assert payload.startswith(b"\x28\xb5\x2f\xfd")  # a zstd frame
    for stored in (payload, zlib.compress(decompress(payload), 1)):  # written now, and by an older slipstream
        got = decode(40, 2, batch.source, stored, fields)
        assert got.messages == ["first line", "second line"] and list(got.ts) == [T0, T0 + 1]
        assert got.levels == bytes([int(Level.INFO), 0]) and got.fields == {"1": {"k": "v"}}
