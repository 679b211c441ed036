"""Masking secrets in log text before it is stored or sent to a drain.

:class:`LogMasker` extends :class:`slipstream.secrets.Masker` by composition: values added here are
added to the base masker too (so API and CLI output keep masking them), and this one also looks
for the forms a value takes when an app logs it encoded (``variants``):

- URL-encoded with ``quote(v, safe="")``, ``quote(v)`` (``/`` kept) and ``quote_plus(v)``, with
  upper- or lower-case hex digits (not a mix of both in one value);
- JSON-escaped (``"`` and ``\\`` and ``/`` escaped, as ``json.dumps`` and some encoders write them);
- base64 of the value, standard and URL-safe alphabets, with and without ``=`` padding;
- the value *inside* a longer base64 text (``Authorization: Basic base64(user:password)``): for
  each of the three byte alignments the characters that depend only on the value's bytes are
  masked. The one or two characters at either edge also encode neighbouring bytes and stay, so
  at most 4 bits of the first and last byte of the value remain visible. Only for values of 8
  characters or more (shorter inner forms would hit ordinary words).

Not caught: other encodings (hex, HTML entities, double URL-encoding), a value split across two
lines or two writes longer than the tailer's line cap, and values shorter than ``Masker.MIN_LEN``.

Speed: one regex alternation over all forms runs at 5-9 MB/s, too slow for 50,000 lines/s (and
compiling one per set of forms found cost more still), so ``mask`` tests each form with ``in``
(C speed: 183 forms of 20 values cost ~1.9 µs per 120-byte line) and replaces the forms found,
longest first, with ``str.replace``. The cost grows with the number of values.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable

from slipstream.secrets import MASK, Masker

INNER_MIN = 8  # shortest value whose mid-base64 forms are masked
_HEX = re.compile("%[0-9A-F]{2}")


def variants(value: str) -> set[str]:
    """Every form of ``value`` the masker looks for (the value itself included)."""
    raw = value.encode()
    forms = {
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value)[1:-1].replace("/", "\\/"),
    }
    forms |= {_HEX.sub(lambda m: m.group().lower(), f) for f in forms if "%" in f}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(raw).decode()
        forms |= {full, full.rstrip("=")}
        if len(raw) >= INNER_MIN:
            for k in (0, 1, 2):
                padded = encode(b"\0" * k + raw + b"\0\0").decode()
                start = (8 * k + 5) // 6  # first character made of the value's bits only
                end = (8 * (k + len(raw))) // 6  # one past the last such character
                forms.add(padded[start:end])
    return {f for f in forms if f}


class LogMasker:
    """Masks secret values and their encoded forms; thread-safe, longest form first."""

    def __init__(self, base: Masker | None = None) -> None:
        self.base = base if base is not None else Masker()
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._forms: list[str] = []  # longest first
        self.base.subscribe(self._learn)  # every value the platform masks, this masks too

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (the base masker's minimum length applies); the base learns them
        and tells this masker back."""
        self.base.add(values)

    def _learn(self, values: list[str]) -> None:
        fresh = [v for v in values if v and len(v) >= Masker.MIN_LEN and v not in self._values]
        if not fresh:
            return
        with self._lock:
            self._values.update(fresh)
            self._forms = sorted({form for v in self._values for form in variants(v)}, key=lambda f: (-len(f), f))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def mask(self, text: str) -> str:
        """``text`` with every form of every value replaced by ``********`` (the same object when
        nothing was found)."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def found(self, text: str) -> bool:
        """Whether any form of any value occurs in ``text``."""
        return any(form in text for form in self._forms)

    def mask_cut(self, text: str) -> str:
        """Mask ``text`` and then any beginning of a form that ends it: for a line cut at the
        tailer's length cap, whose rest (and the rest of a value in it) is dropped."""
        text = self.mask(text)
        for form in self._forms:
            for n in range(min(len(form) - 1, len(text)), Masker.MIN_LEN - 1, -1):
                if text.endswith(form[:n]):
                    return text[:-n] + MASK
        return text
