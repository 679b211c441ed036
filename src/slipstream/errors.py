"""The exception tree. Every expected failure is a :class:`SlipstreamError`; the API maps each class
to an HTTP status in one table (``api.errors``) and the CLI prints ``Error: <message>`` and exits 1.

    SlipstreamError                 an expected failure, shown to the user as one line
    ├── NotFound                    a named service, deploy, database or backup does not exist
    ├── Conflict                    the request clashes with current state (deploy in progress, port in use)
    ├── InvalidInput                bad arguments or configuration (blueprint errors have their own class)
    ├── Unauthenticated             a request to the TCP API without a valid token
    ├── Forbidden                   the token's scope does not cover the request
    ├── CommandFailed               a build, pre-deploy or admin command exited non-zero
    └── Unavailable                 a dependency (HAProxy, PostgreSQL, the daemon) is not reachable
"""

from __future__ import annotations


class SlipstreamError(Exception):
    """Raised for any expected failure; ``hint`` names the next command to run."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class NotFound(SlipstreamError):
    """Raised when a named object does not exist."""


class Conflict(SlipstreamError):
    """Raised when a request clashes with the current state."""


class InvalidInput(SlipstreamError):
    """Raised for bad arguments or configuration."""


class Unauthenticated(SlipstreamError):
    """Raised when a request to the API's TCP listener has no token, or one that is wrong or revoked."""


class Forbidden(SlipstreamError):
    """Raised when a token's scope does not cover what the request asks for."""


class CommandFailed(SlipstreamError):
    """Raised when an external command exits non-zero."""


class Unavailable(SlipstreamError):
    """Raised when a dependency is not reachable."""
