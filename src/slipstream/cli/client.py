"""The CLI's only way to the daemon: HTTP over the API's unix socket."""

from __future__ import annotations

from typing import Any

import httpx

from slipstream.errors import SlipstreamError, Unavailable
from slipstream.settings import Settings


class ApiError(SlipstreamError):
    """Raised when the daemon answers with an error body."""


class Client:
    """A thin JSON client; every error answer becomes an :class:`ApiError` with the daemon's words."""

    def __init__(self, settings: Settings, timeout: float = 60.0) -> None:
        self.settings = settings
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(settings.api_socket)), base_url="http://slipstream", timeout=timeout
        )

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if not self.settings.api_socket.exists():
            raise Unavailable("slipstream is not running", "start it with 'slipstream up --detach'")
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError:
            raise Unavailable(
                "slipstream is not running (its API socket does not answer)", "start it with 'slipstream up --detach'"
            ) from None
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code >= 400:
            raise ApiError(body.get("error") or f"the daemon answered {resp.status_code}", body.get("hint"))
        return body

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", path, json=body or {})

    def alive(self) -> bool:
        try:
            self.get("/v1/health")
            return True
        except SlipstreamError:
            return False
