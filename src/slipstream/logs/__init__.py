"""Logs: one pipeline for every line the platform produces, a store to search it, drains to ship it.

    files (instances, builds, pre-deploy, cron) ──► Tailer ─┐
    daemon events, HAProxy access lines ──► emit() ─────────┼─► LogStore (mask, block, index) ─► Drains
                                                            └─ LogPipeline: one thread, prune

Modules: ``model`` (LogLine, Source, LogQuery, Grep, Level, Stream), ``parse`` (levels, JSON,
--since/--until), ``grep`` (index words, queries, matching), ``mask`` (LogMasker), ``block`` (the
storage unit), ``index`` (the word index's epochs), ``store`` (LogStore, Retention), ``tail``
(Tailer), ``access`` (HAProxy format and parser), ``receiver`` (HAProxy's datagram socket),
``drains`` (syslog, HTTP), ``pipeline`` (LogPipeline).

Wiring, in the daemon: ``masker = LogMasker(ctx.masker)`` (then ``masker.add`` wherever values are
now added to ``ctx.masker``: it adds them there too);
``store = LogStore(home / "logs.db", masker, Retention(...))``;
``pipeline = LogPipeline(store, Drains())``; ``pipeline.start()``; add ``pipeline.handler()`` to the
root logger; ``AccessReceiver(run_dir / "access.sock", pipeline.emit, resolve).start()`` before
HAProxy starts with ``render_access_log_config``; ``pipeline.watch(path, Source(...))`` when a
process starts writing a log file, ``pipeline.retire(path)`` when it has exited. In the API:
``store.search(LogQuery(...))`` and ``store.follow(query, cursor)``. At shutdown: receiver.stop(),
pipeline.stop(), store.close().
"""

from slipstream.logs.access import ACCESS_LOG_FORMAT, AccessRecord, parse_access, render_access_log_config
from slipstream.logs.drains import Drain, Drains, DrainSpec, DrainStats, MemoryDrain
from slipstream.logs.mask import LogMasker
from slipstream.logs.model import Grep, Level, LogLine, LogQuery, LogsError, Source, Stream
from slipstream.logs.parse import detect_level, parse_duration, parse_when
from slipstream.logs.pipeline import LogPipeline
from slipstream.logs.receiver import AccessReceiver
from slipstream.logs.store import LogStore, Retention
from slipstream.logs.tail import Tailer

__all__ = [
    "ACCESS_LOG_FORMAT",
    "AccessReceiver",
    "AccessRecord",
    "Drain",
    "DrainSpec",
    "DrainStats",
    "Drains",
    "Grep",
    "Level",
    "LogLine",
    "LogMasker",
    "LogPipeline",
    "LogQuery",
    "LogStore",
    "LogsError",
    "MemoryDrain",
    "Retention",
    "Source",
    "Stream",
    "Tailer",
    "detect_level",
    "parse_access",
    "parse_duration",
    "parse_when",
    "render_access_log_config",
]
