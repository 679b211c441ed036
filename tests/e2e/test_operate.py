"""Operating what was deployed, end to end: a service answering 500 on 20% of its requests raises
the 5xx alert, delivered to a local webhook receiver whose HMAC check passes, and resolves once
fixed; `slipstream metrics --json` keeps its contract; an HTTP log drain receives the lines,
masked (real daemon, HAProxy and apps; receivers on loopback)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slipstream.alerts.notify import verify
from slipstream.engine.health import free_port
from tests.e2e.blueprints import SECRET, web
from tests.e2e.conftest import Load, make_app_repo, start_daemon, stop_daemon
from tests.e2e.test_resilience import wait_until

pytestmark = pytest.mark.e2e

HOOK_SECRET = "hook-secret-for-the-test"
ALERTS = "    alerts:\n      http5xxRate: {threshold: 10%, window: 6s, hold: 2s}\n"


class Receiver:
    """A loopback HTTP server keeping every POST (headers and body)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    hook, drain = Receiver(), Receiver()
    try:
        yield hook, drain
    finally:
        hook.close()
        drain.close()


def alert_states(hook: Receiver) -> list[str]:
    out = []
    for headers, body in hook.posts:
        assert verify(HOOK_SECRET, headers, body, time.time()), "the signature must check"
        alert = json.loads(body)["alert"]
        if alert["rule"] == "http5xxRate":
            out.append(alert["state"])
    return out


def test_a_5xx_alert_fires_and_resolves_metrics_and_a_drain(
    tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    hook, drain = receivers
    d = start_daemon(
        tmp_path / "home",
        SLIPSTREAM_METRICS_INTERVAL="1",
        SLIPSTREAM_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{hook.port}/hook",
        SLIPSTREAM_ALERT_WEBHOOK_SECRET=HOOK_SECRET,
        SLIPSTREAM_LOG_DRAINS=f"http://127.0.0.1:{drain.port}/logs",
        SLIPSTREAM_SETTLE_SECONDS="0",
    )
    try:
        flaky = web(env={"ERROR_EVERY": "5"}).replace("    envVars:\n", ALERTS + "    envVars:\n")
        repo = make_app_repo(tmp_path / "app", {"render.yaml": flaky})
        r = d.cli("deploy", "web", "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits["1"])
        assert r.returncode == 0, r.stdout + r.stderr
        with Load(d.http_port, "web.localhost", threads=1) as load:
            wait_until(lambda: "firing" in alert_states(hook), timeout=60)
            listed = json.loads(d.cli("alerts", "--json").stdout)
            firing = [a for a in listed if a["rule"] == "http5xxRate" and a["state"] == "firing"]
            assert firing and firing[0]["service"] == "web" and firing[0]["value"] >= 0.1

            def report_with_percentiles() -> dict | None:  # a 10 s bucket closes some seconds after its end
                report = json.loads(d.cli("metrics", "web", "--json", "--since", "5m").stdout)
                return report if report["latency_ms"]["p95"] is not None else None

            report = wait_until(report_with_percentiles, timeout=60, interval=1)
            assert report["requests_per_s"] > 0 and report["status"]["5xx"] > 0 and report["status"]["2xx"] > 0
            assert set(report["latency_ms"]) >= {"p50", "p95", "p99"} and report["latency_ms"]["p95"] is not None
            inst = report["instances"][0]
            assert {"id", "rss_mb", "cpu_percent", "memory_limit_mb", "restarts"} <= set(inst)
            assert inst["id"].startswith("web-d") and inst["rss_mb"] > 0
            # fixed: the errors stop and the alert resolves
            r = d.cli("env", "set", "web", "ERROR_EVERY=0")
            assert r.returncode == 0, r.stdout + r.stderr
            wait_until(lambda: alert_states(hook)[-1:] == ["resolved"], timeout=60)
        assert load.ok > 50
        text = d.cli("metrics", "web", "--since", "5m")
        assert text.returncode == 0 and "p95" in text.stdout
        prom = d.cli("status")  # the daemon still answers; /metrics is read through the API
        assert prom.returncode == 0

        # the drain got the app's lines, masked, each once
        def drained() -> list[dict]:
            lines = []
            for _, body in drain.posts:
                data = json.loads(body)
                lines += data if isinstance(data, list) else data.get("lines", [])
            return lines

        wait_until(lambda: any("listening on" in x.get("message", "") for x in drained()), timeout=30)
        shipped = drained()
        assert SECRET not in json.dumps(shipped)
        seqs = [x["seq"] for x in shipped if x.get("seq") is not None]
        assert len(seqs) == len(set(seqs))  # every line once
    finally:
        stop_daemon(d)
