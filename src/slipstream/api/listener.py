"""The API's optional TCP listener (``SLIPSTREAM_API_LISTEN``): its socket and its TLS files.

Without ``SLIPSTREAM_API_CERT``/``SLIPSTREAM_API_KEY`` the daemon keeps its own CA and server
certificate in ``<home>/api-tls/`` (0700): made at the first start with the PostgreSQL TLS builders
(:mod:`slipstream.databases.tls`), issued again when missing, unreadable, near expiry or when the
listen address changes. Clients trust ``ca.crt`` (``SLIPSTREAM_API_CA``); its SHA-256 fingerprint is
in the daemon's log and in ``slipstream tokens list``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from slipstream.errors import Conflict, InvalidInput
from slipstream.settings import Settings

if TYPE_CHECKING:
    from slipstream.databases.tls import KeyPair

# cryptography's x509 and the TLS builders (which load the databases package, psycopg included) are
# imported where a listener is configured, not by every daemon: ~10 MB of RSS otherwise

log = logging.getLogger("slipstream.api")


@dataclass(frozen=True)
class Listener:
    """Where the TCP API listens and the files its TLS uses."""

    host: str
    port: int
    cert_file: Path
    key_file: Path
    ca_file: Path | None  # None: an operator-given certificate; its CA is theirs

    @property
    def url(self) -> str:
        """The URL a client uses: for a wildcard address, this host's name."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{self.port}"

    def describe(self) -> dict[str, str | None]:
        """What ``GET /v1/api/listener`` answers: the address, and the CA to trust."""
        pem = self.ca_file.read_text() if self.ca_file else None
        return {
            "url": self.url,
            "ca_file": str(self.ca_file) if self.ca_file else None,
            "ca_pem": pem,
            "ca_fingerprint": fingerprint(pem.encode()) if pem else None,
        }


def fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as ``AB:CD:...``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def prepare_listener(settings: Settings) -> Listener | None:
    """The listener the settings ask for, its TLS files made where slipstream owns them; None if off."""
    if settings.api_listen is None:
        return None
    host, port = settings.api_listen
    if settings.api_cert is not None and settings.api_key is not None:
        for path in (settings.api_cert, settings.api_key):
            if not path.is_file():
                raise InvalidInput(f"{path} does not exist", "check SLIPSTREAM_API_CERT and SLIPSTREAM_API_KEY")
        try:  # here, not when the server starts, so a bad pair stops 'up' with one line
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings.api_cert, settings.api_key)
        except ssl.SSLError as exc:
            raise InvalidInput(
                f"SLIPSTREAM_API_CERT and SLIPSTREAM_API_KEY are not a usable certificate and key ({exc.reason})",
                "give a PEM certificate (chain) and its unencrypted PEM private key",
            ) from None
        return Listener(host, port, settings.api_cert, settings.api_key, None)
    from slipstream.databases import tls

    names = tls.plan_cert_names([host], socket.gethostname(), _addresses())
    ensure_tls(settings.api_tls_dir, names, dt.datetime.now(dt.UTC))
    d = settings.api_tls_dir
    return Listener(host, port, d / "server.crt", d / "server.key", d / "ca.crt")


def ensure_tls(directory: Path, names: tuple[str, ...], now: dt.datetime) -> None:
    """Make the CA and the server certificate for ``names`` in ``directory`` where missing or no longer fit."""
    from slipstream.databases import tls

    directory.mkdir(mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    ca = _read_pair(ca_key, ca_cert)
    problem = tls.check_ca(ca, now)
    if ca is None or problem is not None:
        log.info("API TLS: making a new CA in %s (%s)", directory, problem)
        ca = tls.build_ca(now, purpose="API")
        _write(ca_key, ca.key)
        _write(ca_cert, ca.cert)
    key, cert = directory / "server.key", directory / "server.crt"
    problem = tls.check_server_cert(_read_pair(key, cert), ca.cert, names, now)
    if problem is not None:
        log.info("API TLS: issuing a certificate for %s (%s)", ", ".join(names), problem)
        server = tls.build_server_cert(ca, names, now)
        _write(key, server.key)
        _write(cert, server.cert)


def bind_tcp(host: str, port: int) -> socket.socket:
    """The listener's socket, bound before the engine starts so a taken port stops the daemon at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it a small answer waited for the client's delayed ACK (47 ms a request, not 1-3 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Conflict(
            f"the API cannot listen on {host}:{port}: {exc.strerror}", "pick another SLIPSTREAM_API_LISTEN"
        ) from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _addresses() -> list[str]:
    return [
        entry.address
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    ]


def _read_pair(key: Path, cert: Path) -> KeyPair | None:
    from slipstream.databases.tls import KeyPair

    try:
        return KeyPair(key.read_bytes(), cert.read_bytes())
    except OSError:
        return None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
