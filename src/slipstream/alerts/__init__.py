"""Alerts: rules over the metrics' figures (``rules``), their pure evaluation with hold times
(``engine``), the record of active and recent alerts (``store``), notifications by signed webhook
and email (``notify``), and the monitor that ties them to the collector (``monitor``).
"""

from slipstream.alerts.monitor import AlertMonitor
from slipstream.alerts.notify import Dispatcher, SmtpConfig, WebhookConfig
from slipstream.alerts.store import AlertStore

__all__ = ["AlertMonitor", "AlertStore", "Dispatcher", "SmtpConfig", "WebhookConfig"]
