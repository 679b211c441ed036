"""Pure TLS builders: certificate names, the CA and server certificates, the checks that renew them,
and the connection-string properties apps read (no server needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from psycopg.conninfo import conninfo_to_dict

from slipstream.blueprint.envcheck import DATABASE_PROPERTIES
from slipstream.databases import DatabaseInfo
from slipstream.databases.commands import render_postgresql_conf
from slipstream.databases.tls import (
    CA_DAYS,
    RENEW_BEFORE_DAYS,
    SERVER_DAYS,
    CertProblem,
    KeyPair,
    build_ca,
    build_server_cert,
    cert_names,
    check_ca,
    check_server_cert,
    plan_cert_names,
    render_ssl_settings,
)
from slipstream.errors import InvalidInput

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
LOOPBACK = ("localhost", "127.0.0.1", "::1")
IFACES = ["127.0.0.1", "10.0.0.5", "::1", "fe80::1%eth0", "fe80::2", "2001:db8::7"]


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return build_ca(NOW)


@pytest.mark.parametrize(
    ("listen", "hostname", "names"),
    [
        (["127.0.0.1"], "box", LOOPBACK),  # loopback only: no host name
        (["127.0.0.1", "10.0.0.5"], "box", (*LOOPBACK, "10.0.0.5", "box")),
        (["127.0.0.1", "127.0.0.2"], "box", (*LOOPBACK, "127.0.0.2")),
        (["2001:0db8:0:0::1"], "Box.Example.COM", (*LOOPBACK, "2001:db8::1", "box.example.com")),
        (["*"], "box", (*LOOPBACK, "10.0.0.5", "2001:db8::7", "box")),  # link-local and scoped left out
        (["0.0.0.0"], "localhost", (*LOOPBACK, "10.0.0.5", "2001:db8::7")),
        (["10.0.0.5"], "not_a_dns_name", (*LOOPBACK, "10.0.0.5")),
    ],
)
def test_plan_cert_names(listen: list[str], hostname: str, names: tuple[str, ...]) -> None:
    assert plan_cert_names(listen, hostname, IFACES) == names


def test_build_ca_makes_a_ca_that_can_sign_only_leaf_certificates(ca: KeyPair) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert)
    assert cert.subject == cert.issuer
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=CA_DAYS)
    assert ca.key.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted: what postgres reads


def test_build_server_cert_covers_the_names_and_chains_to_the_ca(ca: KeyPair) -> None:
    names = (*LOOPBACK, "10.0.0.5", "box")
    server = build_server_cert(ca, names, NOW)
    cert = x509.load_pem_x509_certificate(server.cert)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert))
    assert cert_names(server.cert) == ("localhost", "box", "127.0.0.1", "::1", "10.0.0.5")
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=SERVER_DAYS)
    assert check_server_cert(server, ca.cert, names, NOW) is None
    with pytest.raises(ValueError, match="at least one name"):
        build_server_cert(ca, (), NOW)


def test_a_server_certificate_never_outlives_its_ca() -> None:
    short_ca = build_ca(NOW, days=30)
    cert = x509.load_pem_x509_certificate(build_server_cert(short_ca, LOOPBACK, NOW).cert)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=30)


def own_ca(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> KeyPair:
    """A minimal CA an operator could drop into ``tls/``, with a key type of their choice."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Example Corp CA")])
    algorithm = hashes.SHA256() if isinstance(key, rsa.RSAPrivateKey) else None
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, algorithm)
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return KeyPair(pem, cert.public_bytes(serialization.Encoding.PEM))


def test_an_operators_own_ca_may_be_rsa_but_not_ed25519() -> None:
    rsa_ca = own_ca(rsa.generate_private_key(65537, 2048))
    assert check_ca(rsa_ca, NOW) is None
    assert check_server_cert(build_server_cert(rsa_ca, LOOPBACK, NOW), rsa_ca.cert, LOOPBACK, NOW) is None
    with pytest.raises(InvalidInput, match="Ed25519PrivateKey, not an EC or RSA key"):
        build_server_cert(own_ca(ed25519.Ed25519PrivateKey.generate()), LOOPBACK, NOW)


def test_check_server_cert_says_why_to_issue_again(ca: KeyPair) -> None:
    server = build_server_cert(ca, LOOPBACK, NOW)
    other_ca = build_ca(NOW)
    renew_at = NOW + dt.timedelta(days=SERVER_DAYS - RENEW_BEFORE_DAYS)
    rows = [
        (None, ca.cert, LOOPBACK, NOW, CertProblem.MISSING),
        (KeyPair(b"junk", server.cert), ca.cert, LOOPBACK, NOW, CertProblem.UNREADABLE),
        (KeyPair(ca.key, server.cert), ca.cert, LOOPBACK, NOW, CertProblem.UNREADABLE),  # key of another cert
        (server, other_ca.cert, LOOPBACK, NOW, CertProblem.OTHER_CA),
        (server, ca.cert, LOOPBACK, renew_at, CertProblem.EXPIRING),
        (server, ca.cert, (*LOOPBACK, "10.0.0.5"), NOW, CertProblem.NAMES),
        (server, ca.cert, LOOPBACK[:2], NOW, CertProblem.NAMES),
        (server, ca.cert, ("LOCALHOST", "127.0.0.1", "0:0::1"), NOW, None),  # the same names, spelled otherwise
        (server, ca.cert, LOOPBACK, renew_at - dt.timedelta(seconds=1), None),
    ]
    for pair, ca_cert, names, now, problem in rows:
        assert check_server_cert(pair, ca_cert, names, now) == problem, (names, now, problem)


def test_check_ca_says_why_to_make_a_new_one(ca: KeyPair) -> None:
    other = build_ca(NOW)
    assert check_ca(ca, NOW) is None
    assert check_ca(None, NOW) == CertProblem.MISSING
    assert check_ca(KeyPair(ca.key, b"junk"), NOW) == CertProblem.UNREADABLE
    assert check_ca(KeyPair(other.key, ca.cert), NOW) == CertProblem.UNREADABLE
    assert check_ca(ca, NOW + dt.timedelta(days=CA_DAYS - RENEW_BEFORE_DAYS)) == CertProblem.EXPIRING


def test_ssl_settings_turn_tls_on_without_forcing_it() -> None:
    lines = render_ssl_settings(Path("/h/postgres/tls/server.crt"), Path("/h/postgres/tls/server.key"))
    assert lines == [
        "ssl = on",
        "ssl_cert_file = '/h/postgres/tls/server.crt'",
        "ssl_key_file = '/h/postgres/tls/server.key'",
    ]
    conf = render_postgresql_conf(5432, Path("/h/socket"), extra=lines)
    assert "ssl = on\n" in conf and "hostssl" not in conf
    with pytest.raises(InvalidInput, match="quotes in the path"):
        render_ssl_settings(Path("/it's/server.crt"), Path("/x/server.key"))


def test_every_render_database_property_resolves_and_the_url_has_no_sslmode() -> None:
    info = DatabaseInfo("main", "127.0.0.1", 6543, "main_db", "main_user", "p@ss:w/rd?&=#%")
    props = info.properties()
    assert sorted(props) == sorted(DATABASE_PROPERTIES)
    assert props["connectionString"].startswith("postgresql://main_user:")
    assert "sslmode" not in props["connectionString"]  # like Render's internal URL: apps opt in to TLS
    parsed = conninfo_to_dict(props["connectionString"])
    assert parsed == {
        "host": props["host"],
        "port": props["port"],
        "user": props["user"],
        "password": props["password"],
        "dbname": props["database"],
    }
    v6 = DatabaseInfo("main", "::1", 6543, "d", "u", "p").properties()
    assert v6["connectionString"] == "postgresql://u:p@[::1]:6543/d" and v6["host"] == "::1"
