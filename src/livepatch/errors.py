"""The base of every error meant for a person to read.

Each layer (kernel, trust, client, server) defines its own subclasses. The
rule they share: ``str(error)`` is one plain sentence that says what happened
and what to do, and ``code`` is a stable identifier that machines can match.
"""

from __future__ import annotations


class LivepatchError(Exception):
    """An expected failure with a message for people and a stable code."""

    code: str = "error"
    exit_code: int = 1
    retry_after: float | None = None
    """Seconds the service asked us to wait before trying again (Retry-After), if it did."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)
