"""Secrets at rest and in output.

Lifecycle: the daemon opens :class:`SecretBox` on its master key (created 0600 on first use), every
env value goes through ``encrypt`` before it reaches the state file, and every line shown to a user
(logs, transcripts, API answers) goes through a :class:`Masker` holding the values in force.
"""

from __future__ import annotations

import base64
import os
import re
import secrets as _secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from slipstream.errors import SlipstreamError

MASK = "********"
_NONCE = 12


class SecretError(SlipstreamError):
    """Raised when a stored value cannot be decrypted (wrong or replaced master key)."""


class SecretBox:
    """AES-256-GCM with a master key kept in a 0600 file."""

    def __init__(self, key_path: Path) -> None:
        self._aead = AESGCM(self._load_or_create(key_path))

    @staticmethod
    def _load_or_create(path: Path) -> bytes:
        if path.exists():
            key = path.read_bytes()
            if len(key) != 32:
                raise SecretError(f"{path} is not a slipstream master key (expected 32 bytes)")
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key

    def encrypt(self, plain: str, context: str = "") -> bytes:
        """Encrypt ``plain``; ``context`` (e.g. the service name) is bound as associated data."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str = "") -> str:
        """Decrypt a value made by :meth:`encrypt` with the same ``context``."""
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], context.encode()).decode()
        except InvalidTag:
            raise SecretError("a stored secret could not be decrypted: was master.key replaced?") from None


def generate_value() -> str:
    """A Render-style generated secret: base64 of 256 random bits."""
    return base64.b64encode(_secrets.token_bytes(32)).decode()


class Masker:
    """Replaces every known secret value in text with ``********``; thread-safe, longest value first."""

    MIN_LEN = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._listeners: list[Callable[[list[str]], None]] = []

    def subscribe(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener`` with every value known now and with each new one from now on (the log
        pipeline's masker learns them this way)."""
        with self._lock:
            self._listeners.append(listener)
            known = sorted(self._values)
        if known:
            listener(known)

    def add(self, values: Iterable[str]) -> None:
        """Register values to hide (short ones are ignored: masking 'on' would garble every log)."""
        with self._lock:
            fresh = sorted({v for v in values if v and len(v) >= self.MIN_LEN} - self._values)
            if fresh:
                self._values.update(fresh)
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            listeners = list(self._listeners)
        if fresh:
            for listener in listeners:
                listener(fresh)

    def mask(self, text: str) -> str:
        """Return ``text`` with every registered value replaced."""
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text
