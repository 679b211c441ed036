"""The CLI's only way to the daemon: HTTP over the API's unix socket, or over TLS to a remote daemon.

With ``SLIPSTREAM_API_URL`` (``https://host:8443``) set, requests go there with
``Authorization: Bearer $SLIPSTREAM_TOKEN``, trusting ``SLIPSTREAM_API_CA`` (else the system's CAs);
otherwise they go to the local socket, which needs no token. Paths in a request (a blueprint, a
directory to deploy) name files on the daemon's machine: :meth:`Client.daemon_path` says how.

httpx (and ssl, for a remote daemon) is imported at the first request, not at import time: it is
the heaviest import of the CLI and a command that fails before asking the daemon anything (no
socket, bad settings) never needs it.
Tests pass ``transport=httpx.MockTransport(handler)`` to answer in process instead of the socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from slipstream.errors import InvalidInput, SlipstreamError, Unavailable
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
        self._transport = transport  # None: the API's unix socket, or SLIPSTREAM_API_URL
        self._http: httpx.Client | None = None

    @property
    def remote(self) -> bool:
        """True when this client talks to a daemon at ``SLIPSTREAM_API_URL``."""
        return self.settings.api_url is not None

    def _connect(self) -> httpx.Client:
        import httpx

        if self._http is None:
            if self.remote:
                self._http = self._remote_client()
            else:
                transport = self._transport or httpx.HTTPTransport(uds=str(self.settings.api_socket))
                self._http = httpx.Client(transport=transport, base_url="http://slipstream", timeout=self._timeout)
        return self._http

    def _remote_client(self) -> httpx.Client:
        import ssl

        import httpx

        s = self.settings
        if not s.token:
            raise InvalidInput(
                f"SLIPSTREAM_API_URL is {s.api_url} but SLIPSTREAM_TOKEN is not set",
                "create a token on the daemon's machine: 'slipstream tokens create NAME --scope read|deploy|admin'",
            )
        if s.api_ca is not None and not s.api_ca.is_file():
            raise InvalidInput(f"SLIPSTREAM_API_CA names {s.api_ca}, which does not exist")
        context = ssl.create_default_context(cafile=str(s.api_ca) if s.api_ca else None)
        transport = self._transport or httpx.HTTPTransport(verify=context)
        return httpx.Client(
            transport=transport,
            base_url=str(s.api_url),
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {s.token}"},
        )

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if self._transport is None and not self.remote and not self.settings.api_socket.exists():
            raise Unavailable("slipstream is not running", NOT_RUNNING_HINT)
        http = self._connect()
        import httpx

        try:
            resp = http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            import ssl

            if self.remote and _caused_by(exc, ssl.SSLCertVerificationError):
                raise Unavailable(
                    f"the daemon at {self.settings.api_url} has a certificate this machine does not trust",
                    "fetch its CA ('slipstream tokens ca' on that machine) and set SLIPSTREAM_API_CA to the file",
                ) from None
            raise self._not_answering() from None
        except httpx.TransportError:
            raise self._not_answering() from None
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code >= 400:
            raise ApiError(body.get("error") or f"the daemon answered {resp.status_code}", body.get("hint"))
        return body

    def _not_answering(self) -> Unavailable:
        if self.remote:
            return Unavailable(
                f"the daemon at {self.settings.api_url} does not answer",
                "check SLIPSTREAM_API_URL and that the daemon there runs with SLIPSTREAM_API_LISTEN",
            )
        return Unavailable("slipstream is not running (its API socket does not answer)", NOT_RUNNING_HINT)

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

    def daemon_path(self, path: Path) -> str:
        """``path`` as the daemon must see it: resolved here for the local daemon; for a remote one a
        file on its machine, so it must be absolute (its content is not sent)."""
        if not self.remote:
            return str(path.resolve())
        if not path.is_absolute():
            raise InvalidInput(
                f"{path} is relative, but the daemon at {self.settings.api_url} reads files on its own machine",
                "give the absolute path of the blueprint (or directory) there, e.g. /srv/shop/render.yaml",
            )
        return str(path)

    def local_only(self, what: str) -> None:
        """InvalidInput when ``what`` cannot work against a remote daemon."""
        if self.remote:
            raise InvalidInput(
                f"{what} works on the daemon's machine only (SLIPSTREAM_API_URL is {self.settings.api_url})",
                "run it there, or unset SLIPSTREAM_API_URL",
            )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """True when ``kind`` is somewhere in the chain of causes of ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
