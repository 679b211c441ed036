"""A fake of the daemon's HTTP API for in-process CLI tests: canned JSON answers by route.

``FakeApi.transport()`` is an ``httpx.MockTransport`` that the CLI's ``Client`` talks to instead of
the unix socket. A route answers a dict (200), a callable of the request (for answers that change
between polls), or ``error(status, message, hint)``. Every request is recorded in ``requests``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

Answer = dict[str, Any] | httpx.Response | Callable[[httpx.Request], "dict[str, Any] | httpx.Response"]

MASK = "********"

DEPLOY = {
    "id": 7,
    "service": "web",
    "kind": "deploy",
    "status": "live",
    "build_id": 3,
    "commit": "0123456789abcdef0123",
    "source": "git",
    "rollback_of": None,
    "steps": {"build": 1.5, "start": 0.2, "health": 0.4, "flip": 0.01},
    "message": None,
    "created_at": 1_700_000_000.0,
    "finished_at": 1_700_000_003.0,
}

STATUS = {
    "services": [
        {
            "name": "web",
            "type": "web",
            "runtime": "python",
            "url": "http://web.localhost:8080",
            "live_deploy": DEPLOY,
            "active_deploy": None,
            "instances": [{"id": "web-d7-1", "deploy": 7, "port": 40001, "pid": 123, "state": "running"}],
        }
    ],
    "http_port": 8080,
}


def log_line(seq: int, message: str, instance: str | None = "web-d7-1", stream: str = "app") -> dict[str, object]:
    """A line as the API answers it (the log store's shape)."""
    return {
        "seq": seq,
        "time": f"2026-12-02T13:00:0{seq % 10}.000000Z",
        "service": "web",
        "stream": stream,
        "deploy": 7,
        "instance": instance,
        "build": None,
        "level": None,
        "message": message,
        "fields": None,
    }


LOGS = {
    "lines": [
        log_line(1, "GET / 200"),
        log_line(2, f"password={MASK} [tag] :b: kept"),
        log_line(3, "deploy 7 is live", instance=None, stream="platform"),
    ],
    "cursor": 3,
}

DATABASES = {
    "databases": [
        {
            "name": "main",
            "database": "main",
            "user": "main",
            "host": "127.0.0.1",
            "port": 5433,
            "url": f"postgresql://main:{MASK}@127.0.0.1:5433/main",
            "backups": 1,
            "last_backup": "main-20260101-000000",
        }
    ]
}

BACKUPS = {
    "backups": [
        {
            "id": "main-20260101-000000",
            "database": "main",
            "kind": "manual",
            "created_at": 1_700_000_000.0,
            "size_bytes": 4096,
            "status": "ok",
            "error": None,
        }
    ]
}

BASE_BACKUPS = {
    "base_backups": [{"id": "base-1", "finished_at": 1_700_000_100.0, "size_bytes": 1 << 20}],
    "from": 1_700_000_100.0,
}

RUNS = {
    "runs": [
        {
            "id": 2,
            "service": "rollup",
            "deploy_id": 4,
            "trigger": "manual",
            "status": "succeeded",
            "exit_code": 0,
            "log_path": "/home/x/instances/rollup-run-2.log",
            "started_at": 1_700_000_000.0,
            "finished_at": 1_700_000_002.5,
        }
    ]
}

ENV = {
    "env": [
        {"key": "API_TOKEN", "value": MASK, "source": "env set"},
        {"key": "PORT", "value": MASK, "source": "blueprint"},
    ]
}


def error(status: int, message: str, hint: str | None = None) -> httpx.Response:
    """An error answer shaped like the API's (``{"error": ..., "hint": ...}``)."""
    return httpx.Response(status, json={"error": message, "hint": hint})


class FakeApi:
    """Routes ``(method, path)`` to answers; unknown routes answer 404 like the daemon."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Answer] = {
            ("GET", "/v1/health"): {"ok": True, "pid": 1, "http_port": 8080},
            ("GET", "/v1/status"): STATUS,
            ("GET", "/v1/services/web/deploys"): {"deploys": [DEPLOY]},
            ("GET", "/v1/services/web/logs"): LOGS,
            ("GET", "/v1/databases"): DATABASES,
            ("GET", "/v1/databases/main/backups"): BACKUPS,
            ("GET", "/v1/postgres/base-backups"): BASE_BACKUPS,
            ("GET", "/v1/services/rollup/runs"): RUNS,
            ("POST", "/v1/services/rollup/runs"): {"run": "started"},
            ("GET", "/v1/services/web/env"): ENV,
        }
        self.requests: list[httpx.Request] = []

    def route(self, method: str, path: str, answer: Answer) -> None:
        self.routes[(method, path)] = answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return error(404, f"no route {request.method} {request.url.path}")
        if callable(answer):
            answer = answer(request)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)
