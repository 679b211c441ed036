"""Bearer tokens for the API's TCP listener: made, checked and revoked here; the state keeps digests.

A token reads ``slp_<id>_<secret>``: ``id`` (8 hex digits) finds its record without a scan and
names it in listings; ``secret`` is 32 random bytes. Only the SHA-256 of the whole token is stored
and it is compared in constant time, so the state file (or a backup of it) yields no usable token.
The token text exists once, in the answer to its creation; the API never returns it again and
nothing logs it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from slipstream.errors import InvalidInput, Unauthenticated
from slipstream.state.store import Store, TokenRecord

PREFIX = "slp_"
TOUCH_EVERY_S = 60.0  # how stale a token's last_used_at may be: not a state write on every request
_TOKEN = re.compile(r"^slp_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HINT = "create one on the daemon's machine with 'slipstream tokens create NAME --scope read|deploy|admin'"


class Scope(StrEnum):
    """What a token may do; each scope includes the ones before it."""

    READ = "read"  # GET requests (secrets stay masked)
    DEPLOY = "deploy"  # read, plus deploy, apply, rollback, cancel, run a job, take a backup
    ADMIN = "admin"  # everything: tokens, env and secrets, deletions, restores, shutdown

    def covers(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class NewToken:
    """A token just made: its text (shown once) and its record."""

    text: str
    record: TokenRecord


def build_token() -> tuple[str, str]:
    """A fresh token's id and text."""
    token_id = secrets.token_hex(4)
    return token_id, f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def digest(text: str) -> str:
    """What the state keeps of a token: the hex SHA-256 of its text."""
    return hashlib.sha256(text.encode()).hexdigest()


def issue(store: Store, name: str, scope: Scope) -> NewToken:
    """Make and record a token named ``name`` (unique) with ``scope``."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"token name {name!r} is not allowed", "use letters, digits, '.', '_' and '-' (at most 63, e.g. ci-deploy)"
        )
    token_id, text = build_token()
    record = store.add_token(token_id, name, scope, digest(text))
    store.event("tokens", f"API token {name!r} ({record.id}, scope {scope}) created")
    return NewToken(text, record)


def revoke(store: Store, name_or_id: str) -> TokenRecord:
    """Delete a token by name or id; it stops working at once."""
    record = store.delete_token(name_or_id)
    store.event("tokens", f"API token {record.name!r} ({record.id}, scope {record.scope}) revoked")
    return record


def verify(store: Store, authorization: str | None, now: float | None = None) -> TokenRecord:
    """The record of the token in an ``Authorization: Bearer`` header; Unauthenticated otherwise."""
    if not authorization:
        raise Unauthenticated("this API needs a token (Authorization: Bearer ...)", "set SLIPSTREAM_TOKEN; " + _HINT)
    scheme, _, text = authorization.partition(" ")
    text = text.strip()
    match = _TOKEN.fullmatch(text)
    if scheme.lower() != "bearer" or match is None:
        raise Unauthenticated("the token is not a slipstream token (Authorization: Bearer slp_...)", _HINT)
    record = store.token(match.group(1))
    if record is None or not hmac.compare_digest(digest(text), record.digest):
        raise Unauthenticated("the token is wrong or was revoked", _HINT)
    now = time.time() if now is None else now
    if record.last_used_at is None or now - record.last_used_at > TOUCH_EVERY_S:
        store.touch_token(record.id, now)
    return record
