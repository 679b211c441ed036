"""Which env keys hold secrets by their name alone: one rule for the blueprint, the engine and the
masker (a value under such a key is never shown)."""

from __future__ import annotations

import re

SECRET_NAME = re.compile(
    r"SECRET|PASSW|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|(^|_)KEY(_|$)|DSN|DATABASE_URL|(^|_)AUTH", re.IGNORECASE
)


def looks_secret(key: str) -> bool:
    """True for env keys whose values are secret by name (tokens, passwords, keys, URLs with credentials)."""
    return bool(SECRET_NAME.search(key))
