from __future__ import annotations

import base64
import json
import re
import urllib.parse

import pytest

from slipstream.logs.mask import LogMasker, variants
from slipstream.secrets import MASK, Masker

SECRET = "s3cr3t/Pa55+wörd?&="  # reserved URL characters, a non-ASCII letter, base64-unfriendly bytes
RAW = SECRET.encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


FORMS = {
    "plain": SECRET,
    "quote": urllib.parse.quote(SECRET, safe=""),
    "quote keeps /": urllib.parse.quote(SECRET),
    "quote_plus": urllib.parse.quote_plus(SECRET),
    "lower-case hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(SECRET, safe="")),
    "json": json.dumps(SECRET)[1:-1],
    "base64": b64(RAW),
    "base64 unpadded": b64(RAW).rstrip("="),
    "urlsafe base64": base64.urlsafe_b64encode(RAW).decode(),
    "urlsafe unpadded": base64.urlsafe_b64encode(RAW).decode().rstrip("="),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_each_form_is_masked(form: str) -> None:
    m = LogMasker()
    m.add([SECRET])
    out = m.mask(f"before {form} after")
    assert out == f"before {MASK} after"
    assert m.mask(f"x{form}y") == f"x{MASK}y"


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode], ids=["std", "urlsafe"])
def test_a_value_inside_longer_base64_is_masked_at_every_alignment(offset: int, encode: object) -> None:
    blob = b"u" * offset + RAW + b";more data"
    enc = encode(blob).decode()  # type: ignore[operator]
    m = LogMasker()
    m.add([SECRET])
    out = m.mask(enc)
    assert out.count(MASK) == 1
    a = out.index(MASK)
    b = len(enc) - (len(out) - a - len(MASK))
    # the value's bits are in characters [first, last); only a character shared with a neighbouring
    # byte may stay on either side
    first, last = offset * 8 // 6, -(-(offset + len(RAW)) * 8 // 6)
    assert first <= a <= first + 1
    assert last - 1 <= b <= last


def test_basic_auth_header_is_masked() -> None:
    m = LogMasker()
    m.add(["correct-horse-battery"])
    header = "Authorization: Basic " + b64(b"admin:correct-horse-battery")
    assert "Basic " in m.mask(header) and MASK in m.mask(header)


def test_short_values_are_ignored_and_base_masker_learns_values() -> None:
    base = Masker()
    m = LogMasker(base)
    m.add(["on", "abcd1234"])
    assert m.mask("on and abcd1234") == f"on and {MASK}"
    assert base.mask("abcd1234") == MASK
    assert not LogMasker()  # nothing to mask: falsy, mask is the identity
    assert LogMasker().mask("abc") == "abc"


def test_longest_form_wins() -> None:
    m = LogMasker()
    m.add(["abcdef123", "abcdef1234567"])
    assert m.mask("prefix abcdef1234567 wins") == f"prefix {MASK} wins"


def test_mask_cut_hides_the_start_of_a_value_at_the_end() -> None:
    m = LogMasker()
    m.add([SECRET])
    assert m.mask_cut("password=" + SECRET[:7]) == "password=" + MASK
    assert m.mask_cut("password=" + SECRET[:2]) == "password=" + SECRET[:2]  # too short to tell
    assert m.mask_cut("nothing here") == "nothing here"


def test_variants_include_the_value_and_skip_inner_forms_of_short_values() -> None:
    assert "pass" in variants("pass")
    assert len(variants("abcd")) < len(variants("abcdefgh"))
