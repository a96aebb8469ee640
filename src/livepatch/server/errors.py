"""Errors of the patch service, each bound to an HTTP status and a stable code.

The API maps them to ``{"error": {"code", "message"}}`` bodies; the admin
command prints the message. Messages are one sentence saying what happened
and what to do.
"""

from __future__ import annotations

import math

from livepatch.errors import LivepatchError


def retry_after(wait: float) -> str:
    """The Retry-After value (whole seconds, at least 1) for a wait."""
    return str(max(1, math.ceil(wait)))


class ServerError(LivepatchError):
    """A failure of a request or an admin command that the caller can fix."""

    status: int = 400
    code = "bad-request"


class UnknownToken(ServerError):
    status = 401
    code = "unknown-token"

    def __init__(self) -> None:
        super().__init__("Unknown Auth-Token: check the token you were given and try again.")


class TokenRevoked(ServerError):
    status = 403
    code = "token-revoked"

    def __init__(self) -> None:
        super().__init__("This token was revoked: ask the administrator for a new one.")


class TokenExhausted(ServerError):
    status = 409
    code = "token-exhausted"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This token has no machine slots left (limit {limit}): de-enrol a machine "
            "or ask the administrator for a token with more machines."
        )


class Unauthenticated(ServerError):
    status = 401
    code = "unauthenticated"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "The machine credential is missing, unknown or expired: enrol the machine again."
        )


class Forbidden(ServerError):
    status = 403
    code = "forbidden"


class NotFound(ServerError):
    status = 404
    code = "not-found"


class Conflict(ServerError):
    status = 409
    code = "conflict"


class InvalidRequest(ServerError):
    status = 422
    code = "invalid-request"


class RateLimited(ServerError):
    """429: over a rate limit; ``retry_after`` is the wait, sent as Retry-After."""

    status = 429
    code = "rate-limited"

    def __init__(self, wait: float) -> None:
        super().__init__(f"Too many requests: try again in {retry_after(wait)} seconds.")
        self.retry_after = wait


class ConfigurationError(ServerError):
    code = "bad-configuration"
    exit_code = 2
