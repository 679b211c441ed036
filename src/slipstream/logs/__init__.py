"""Logs: one pipeline for every line the platform produces, a store to search it, drains to ship it.

    files (instances, builds, pre-deploy, cron) ──► Tailer ─┐
    daemon events, HAProxy access lines ──► emit() ─────────┼─► LogStore (mask, block, index) ─► Drains
                                                            └─ LogPipeline: one thread, prune

Modules: ``model`` (LogLine, Source, LogQuery, Grep, Level, Stream), ``parse`` (levels, JSON,
--since/--until), ``grep`` (index words and queries), ``mask`` (LogMasker), ``block`` (the storage
unit), ``store`` (LogStore, Retention), ``tail`` (Tailer), ``access`` (HAProxy format and parser),
``receiver`` (HAProxy's datagram socket), ``drains`` (syslog, HTTP), ``pipeline`` (LogPipeline).
"""
