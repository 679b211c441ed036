"""Masking secrets in log text before it is stored or sent to a drain.

:class:`LogMasker` extends :class:`slipstream.secrets.Masker` by composition: values added here are
added to the base masker too (so API and CLI output keep masking them), and this one also looks
for the forms a value takes when an app logs it encoded (``variants``):

- URL-encoded with ``quote(v, safe="")``, ``quote(v)`` (``/`` kept) and ``quote_plus(v)``; the
  hex digits of ``%xx`` match in either case;
- JSON-escaped (``"`` and ``\\`` and ``/`` escaped, as ``json.dumps`` and some encoders write them);
- base64 of the value, standard and URL-safe alphabets, with and without ``=`` padding;
- the value *inside* a longer base64 text (``Authorization: Basic base64(user:password)``): for
  each of the three byte alignments the characters that depend only on the value's bytes are
  masked. The one or two characters at either edge also encode neighbouring bytes and stay, so
  at most 4 bits of the first and last byte of the value remain visible. Only for values of 8
  characters or more (shorter inner forms would hit ordinary words).

Not caught: other encodings (hex, HTML entities, double URL-encoding), a value split across two
lines or two writes longer than the tailer's line cap, and values shorter than ``Masker.MIN_LEN``.

Speed: one regex alternation over all forms runs at 5-9 MB/s, too slow for 50,000 lines/s, so
``mask`` first checks which forms occur at all (a substring test of each form's longest word
run against the text's distinct words, C speed), and runs a regex made of just those forms.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable

from slipstream.logs.grep import WORD_TABLE
from slipstream.secrets import MASK, Masker

INNER_MIN = 8  # shortest value whose mid-base64 forms are masked


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


def _pattern(form: str) -> str:
    """A regex for one form; ``%xx`` escapes match in either case."""
    pieces = re.split(r"(%[0-9A-F]{2})", form)
    out = []
    for piece in pieces:
        if len(piece) == 3 and piece.startswith("%") and re.fullmatch(r"%[0-9A-F]{2}", piece):
            out.append("%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in piece[1:]))
        else:
            out.append(re.escape(piece))
    return "".join(out)


def _key(form: str) -> str:
    """The longest word run of a form: it lies inside a word of any text that contains the form."""
    runs = form.encode().translate(WORD_TABLE).split()
    return max(runs, key=len).decode() if runs else ""


class LogMasker:
    """Masks secret values and their encoded forms; thread-safe, longest form first."""

    def __init__(self, base: Masker | None = None) -> None:
        self.base = base if base is not None else Masker()
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._forms: dict[str, str] = {}  # form -> its regex
        self._keys: list[tuple[str, str]] = []  # (key, form), checked before masking
        self._cache: dict[frozenset[str], re.Pattern[str]] = {}

    def add(self, values: Iterable[str]) -> None:
        """Register secret values (and the base masker's minimum length applies)."""
        fresh = [v for v in values if v and len(v) >= Masker.MIN_LEN and v not in self._values]
        if not fresh:
            return
        self.base.add(fresh)
        with self._lock:
            self._values.update(fresh)
            forms = dict(self._forms)
            for v in fresh:
                for form in variants(v):
                    forms.setdefault(form, _pattern(form))
            self._forms = forms
            self._keys = sorted(((_key(f), f) for f in forms), key=lambda kf: len(kf[1]), reverse=True)
            self._cache = {}

    def __bool__(self) -> bool:
        return bool(self._keys)

    def mask(self, text: str, words: str | None = None) -> str:
        """``text`` with every form of every value replaced by ``********``.

        ``words`` (the text's distinct words, from ``grep.words_of``) makes the check for which
        forms occur cheaper; without it the text itself is searched.
        """
        keys = self._keys
        if not keys:
            return text
        haystack = words if words is not None else text
        present = frozenset(form for key, form in keys if (key in haystack if key else form in text))
        if not present:
            return text
        rx = self._cache.get(present)
        if rx is None:
            ordered = sorted(present, key=len, reverse=True)
            rx = re.compile("|".join(self._forms[f] for f in ordered))
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[present] = rx
        return rx.sub(MASK, text)

    def mask_cut(self, text: str) -> str:
        """Mask ``text`` and then any beginning of a form that ends it: for a line cut at the
        tailer's length cap, whose rest (and the rest of a value in it) is dropped."""
        text = self.mask(text)
        tail = text[-max((len(f) for f in self._forms), default=0) :]
        for form in sorted(self._forms, key=len, reverse=True):
            for n in range(min(len(form) - 1, len(tail)), Masker.MIN_LEN - 1, -1):
                if tail.endswith(form[:n]):
                    return text[:-n] + MASK
        return text
