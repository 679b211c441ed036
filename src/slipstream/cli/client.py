"""The CLI's only way to the daemon: HTTP over the API's unix socket.

httpx is imported at the first request, not at import time: it is the heaviest import of the CLI
and a command that fails before asking the daemon anything (no socket, bad settings) never needs it.
Tests pass ``transport=httpx.MockTransport(handler)`` to answer in process instead of the socket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slipstream.errors import SlipstreamError, Unavailable
from slipstream.settings import Settings

if TYPE_CHECKING:
    import httpx

NOT_RUNNING_HINT = "start it with 'slipstream up --detach'"


class ApiError(SlipstreamError):
    """Raised when the daemon answers with an error body."""


class Client:
    """A thin JSON client; every error answer becomes an :class:`ApiError` with the daemon's words."""

    def __init__(self, settings: Settings, timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._timeout = timeout
        self._transport = transport  # None: the API's unix socket
        self._http: httpx.Client | None = None

    def _connect(self) -> httpx.Client:
        import httpx

        if self._http is None:
            transport = self._transport or httpx.HTTPTransport(uds=str(self.settings.api_socket))
            self._http = httpx.Client(transport=transport, base_url="http://slipstream", timeout=self._timeout)
        return self._http

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if self._transport is None and not self.settings.api_socket.exists():
            raise Unavailable("slipstream is not running", NOT_RUNNING_HINT)
        http = self._connect()
        import httpx

        try:
            resp = http.request(method, path, **kw)
        except httpx.TransportError:
            raise Unavailable("slipstream is not running (its API socket does not answer)", NOT_RUNNING_HINT) from None
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
