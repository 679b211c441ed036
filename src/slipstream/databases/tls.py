"""Pure builders for the embedded cluster's TLS: a private CA, a server certificate, and the checks
that say when either must be made again. Keys and certificates are PEM bytes in and out; writing
them (owners, modes) is :meth:`slipstream.databases.server.EmbeddedServer.start`'s job.

Keys are ECDSA P-256: quick to make, and a slightly cheaper handshake than RSA-2048 (11 ms against
14 ms median on the loaded 2-core test machine); libpq, node-postgres, JDBC and pgx all accept them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from slipstream.errors import InvalidInput

CA_DAYS = 3650  # clients pin this certificate (sslrootcert): it must outlive many server certificates
SERVER_DAYS = 730
RENEW_BEFORE_DAYS = 60  # a start (or a daemon restart) inside this window issues a new server certificate
CLOCK_SKEW = dt.timedelta(hours=1)  # not_before lies this far back, for clients whose clock is behind
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = {"*", "0.0.0.0", "::"}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate, both PEM."""

    key: bytes
    cert: bytes


class CertProblem(StrEnum):
    """Why a certificate has to be made again."""

    MISSING = "missing"
    UNREADABLE = "unreadable"
    EXPIRING = "expiring"
    OTHER_CA = "issued by another CA"
    NAMES = "names changed"


def plan_cert_names(listen: Sequence[str], hostname: str = "", interfaces: Sequence[str] = ()) -> tuple[str, ...]:
    """Loopback, every listen address (for a wildcard: ``interfaces``), and ``hostname`` if not loopback only."""
    names = list(LOOPBACK_NAMES)
    wildcard = False
    for raw in listen:
        address = raw.strip()
        if address in _WILDCARDS:
            wildcard = True
        elif address:
            names.append(str(ipaddress.ip_address(address)))
    if wildcard:
        for raw in interfaces:
            try:
                ip = ipaddress.ip_address(raw)
            except ValueError:
                continue  # a scoped IPv6 address ("fe80::1%eth0"): no client can name it in a URL
            if not ip.is_link_local:
                names.append(str(ip))
    remote = any(not _is_loopback(name) for name in names)
    if remote and hostname and _HOSTNAME.fullmatch(hostname) and hostname.lower() != "localhost":
        names.append(hostname.lower())
    return tuple(dict.fromkeys(names))


def build_ca(now: dt.datetime, *, days: int = CA_DAYS, purpose: str = "PostgreSQL") -> KeyPair:
    """A new self-signed CA (key + certificate) that may sign server certificates and nothing below
    them; ``purpose`` names what it serves in its common name (the cluster's, or the API's)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "slipstream"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"slipstream {purpose} CA {now:%Y-%m-%d}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def build_server_cert(ca: KeyPair, names: Sequence[str], now: dt.datetime, *, days: int = SERVER_DAYS) -> KeyPair:
    """A new server key and a certificate for ``names`` (DNS names or IP addresses), signed by ``ca``."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidInput(
            f"the cluster's CA key is a {type(ca_key).__name__}, not an EC or RSA key",
            "remove postgres/tls/ so that slipstream makes a new CA, or put an EC or RSA CA there",
        )
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def check_ca(ca: KeyPair | None, now: dt.datetime) -> CertProblem | None:
    """Why the CA must be made again (missing, unreadable, key and certificate apart, expiring), or None."""
    if ca is None:
        return CertProblem.MISSING
    try:
        cert = x509.load_pem_x509_certificate(ca.cert)
        key = serialization.load_pem_private_key(ca.key, password=None)
    except ValueError:
        return CertProblem.UNREADABLE
    if key.public_key() != cert.public_key():
        return CertProblem.UNREADABLE
    if cert.not_valid_after_utc - now <= dt.timedelta(days=RENEW_BEFORE_DAYS):
        return CertProblem.EXPIRING
    return None


def check_server_cert(
    server: KeyPair | None, ca_cert: bytes, names: Sequence[str], now: dt.datetime
) -> CertProblem | None:
    """Why the server certificate must be issued again, or None when it is good for ``names`` under ``ca_cert``."""
    if server is None:
        return CertProblem.MISSING
    try:
        cert = x509.load_pem_x509_certificate(server.cert)
        key = serialization.load_pem_private_key(server.key, password=None)
        ca = x509.load_pem_x509_certificate(ca_cert)
    except ValueError:
        return CertProblem.UNREADABLE
    if key.public_key() != cert.public_key():
        return CertProblem.UNREADABLE
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return CertProblem.OTHER_CA
    if cert.not_valid_after_utc - now <= dt.timedelta(days=RENEW_BEFORE_DAYS):
        return CertProblem.EXPIRING
    if set(cert_names(server.cert)) != {str(n) for n in map(_normal_name, names)}:
        return CertProblem.NAMES
    return None


def cert_names(cert_pem: bytes) -> tuple[str, ...]:
    """The subject alternative names of a PEM certificate, DNS names and IP addresses as text."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)


def render_ssl_settings(cert_file: Path, key_file: Path) -> list[str]:
    """``postgresql.conf`` lines that turn TLS on (plain connections stay allowed: no ``hostssl`` rules)."""
    for path in (cert_file, key_file):
        if "'" in str(path) or "\\" in str(path) or "\n" in str(path):
            raise InvalidInput(
                f"{path} cannot be written into postgresql.conf (quotes in the path)",
                "put SLIPSTREAM_HOME on a path without them",
            )
    return ["ssl = on", f"ssl_cert_file = '{cert_file}'", f"ssl_key_file = '{key_file}'"]


def _general_name(name: str) -> x509.GeneralName:
    normal = _normal_name(name)
    if isinstance(normal, str):
        return x509.DNSName(normal)
    return x509.IPAddress(normal)


def _normal_name(name: str) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return name.lower()


def _is_loopback(name: str) -> bool:
    normal = _normal_name(name)
    return normal == "localhost" if isinstance(normal, str) else normal.is_loopback


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
