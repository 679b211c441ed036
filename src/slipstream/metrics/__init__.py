"""Metrics: collect figures from the proxy, instances, databases, key values and cron jobs every
10 s, keep them (10 s for 24 h, 1 min for 14 days), report them and expose them to Prometheus.

``model`` (data), ``parse`` (pure parsers and builders), ``histogram`` (latency percentiles),
``store`` (SQLite), ``collect`` (the round and its thread), ``sources`` (the real readers),
``report`` and ``sparkline`` (what the CLI shows), ``prometheus`` (text endpoint and listener),
``fake`` (a fake HAProxy answer).
"""

from slipstream.metrics.collect import Collector, Sources
from slipstream.metrics.model import Figures
from slipstream.metrics.store import MetricsStore

__all__ = ["Collector", "Figures", "MetricsStore", "Sources"]
