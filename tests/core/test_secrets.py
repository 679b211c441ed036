from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slipstream.secretnames import looks_secret
from slipstream.secrets import MASK, Masker, SecretBox, SecretError, generate_value


def test_round_trip_and_key_file_is_private(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "master.key")
    blob = box.encrypt("hunter2-value", "service:web")
    assert b"hunter2" not in blob
    assert box.decrypt(blob, "service:web") == "hunter2-value"
    assert stat.S_IMODE(os.stat(tmp_path / "master.key").st_mode) == 0o600
    assert SecretBox(tmp_path / "master.key").decrypt(blob, "service:web") == "hunter2-value"


def test_wrong_context_or_key_is_refused(tmp_path: Path) -> None:
    blob = SecretBox(tmp_path / "a.key").encrypt("v", "service:web")
    with pytest.raises(SecretError):
        SecretBox(tmp_path / "a.key").decrypt(blob, "service:api")
    with pytest.raises(SecretError):
        SecretBox(tmp_path / "b.key").decrypt(blob, "service:web")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("token=abcdef123 and again abcdef123", f"token={MASK} and again {MASK}"),
        ("prefix abcdef1234567 wins", f"prefix {MASK} wins"),
        ("on off", "on off"),
    ],
)
def test_masker(text: str, expected: str) -> None:
    m = Masker()
    m.add(["abcdef123", "abcdef1234567", "on"])
    assert m.mask(text) == expected


def test_generated_values_are_256_bit_base64() -> None:
    import base64

    a, b = generate_value(), generate_value()
    assert a != b and len(base64.b64decode(a)) == 32


@pytest.mark.parametrize(
    "key, secret",
    [("API_TOKEN", True), ("DATABASE_URL", True), ("PORT", False), ("LOG_LEVEL", False), ("SECRET_KEY", True)],
)
def test_looks_secret(key: str, secret: bool) -> None:
    assert looks_secret(key) is secret
