"""Every client failure a person may read, each with a stable code.

One sentence each: what happened and what to do. Messages never include
tokens or credentials. ``retryable`` marks transport and server trouble that
the daemon answers with backoff rather than waiting a whole check interval.
"""

from __future__ import annotations

from livepatch.errors import LivepatchError


class ClientError(LivepatchError):
    code = "client-error"
    retryable = False


class NotEnabled(ClientError):
    code = "not-enabled"

    def __init__(self) -> None:
        super().__init__(
            "Machine is not enabled; run `livepatch enable TOKEN` as root to enable it."
        )


class AlreadyEnabled(ClientError):
    code = "already-enabled"

    def __init__(self) -> None:
        super().__init__(
            "This machine is already enabled; run `livepatch disable` first to enrol it again."
        )


class NeedsRoot(ClientError):
    code = "needs-root"
    exit_code = 4

    def __init__(self, command: str, purpose: str = "") -> None:
        purpose = f" {purpose}" if purpose else ""
        super().__init__(f"`livepatch {command}` needs root{purpose}; run it again with sudo.")


class SettingsNeedRoot(ClientError):
    code = "needs-root"
    exit_code = 4

    def __init__(self) -> None:
        super().__init__(
            "The settings are readable by root only; run `sudo livepatch config` to see them."
        )


class StateNeedsRoot(ClientError):
    code = "needs-root"
    exit_code = 4

    def __init__(self, directory: str) -> None:
        super().__init__(
            f"The state in {directory} is readable by root only; "
            "run `sudo livepatch status` to see it."
        )


class NotConfigured(ClientError):
    code = "no-remote-server"

    def __init__(self) -> None:
        super().__init__(
            "No patch service is configured; run `livepatch config remote-server=URL` first."
        )


class InvalidConfig(ClientError):
    code = "invalid-config"
    exit_code = 2


class TokenUnreadable(ClientError):
    code = "token-unreadable"
    exit_code = 2


class UnknownToken(ClientError):
    code = "unknown-token"

    def __init__(self) -> None:
        super().__init__(
            "Unknown Auth-Token: the patch service does not know this token; check it and retry."
        )


class TokenRevoked(ClientError):
    code = "token-revoked"

    def __init__(self) -> None:
        super().__init__("This token was revoked; ask the service administrator for a new one.")


class TokenExhausted(ClientError):
    code = "token-exhausted"

    def __init__(self) -> None:
        super().__init__(
            "This token has no machine slots left; disable another machine or ask for a new token."
        )


class CredentialRejected(ClientError):
    code = "credential-rejected"

    def __init__(self) -> None:
        super().__init__(
            "The patch service no longer accepts this machine's credential; "
            "run `livepatch disable` and enable it again with a token."
        )


class ServiceUnreachable(ClientError):
    code = "service-unreachable"
    retryable = True

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"Cannot reach the patch service at {url} ({reason}); "
            "check the network, the proxy settings and remote-server."
        )


class TlsFailure(ClientError):
    code = "tls-failure"
    retryable = True

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"TLS verification of the patch service at {url} failed ({reason}); "
            "check ca-certs and the server's certificate."
        )


class ServiceError(ClientError):
    """The service answered with an error we did not expect (5xx or a bad reply)."""

    code = "service-error"
    retryable = True
    status: int | None = None
    """The HTTP status of the answer, when there was one."""


class ServiceBusy(ServiceError):
    """429 or 503: the service asks machines to come back later (Retry-After)."""

    code = "service-busy"

    def __init__(self, url: str, status: int, retry_after: float | None) -> None:
        when = f"in {retry_after:.0f} seconds" if retry_after is not None else "later"
        super().__init__(
            f"The patch service at {url} is busy (HTTP {status}); "
            f"livepatch checks again {when}, or run the command again then."
        )
        self.retry_after = retry_after


class MetadataRejected(ClientError):
    """Update metadata failed verification: possibly an attack, never applied."""

    code = "metadata-rejected"


class UnsupportedKernel(ClientError):
    code = "unsupported-kernel"

    def __init__(self, release: str, reason: str) -> None:
        super().__init__(f"This machine runs an unsupported kernel ({release}): {reason}")


class SignatureFailure(ClientError):
    code = "signature-failure"

    def __init__(self, patch_id: str, reason: str) -> None:
        super().__init__(
            f"Patch {patch_id} failed signature verification ({reason}); it was not loaded."
        )


class UnloadRefused(ClientError):
    """`livepatch disable --unload` could not take one of our patches out of the kernel."""

    code = "unload-refused"

    def __init__(self, module: str, step: str, cause: str) -> None:
        super().__init__(
            f"Livepatch {module} stays loaded until the next reboot: the kernel refused to "
            f"{step} it ({cause})."
        )


class DaemonUnavailable(ClientError):
    code = "daemon-unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The livepatch daemon did not answer ({reason}); check its logs.")


class Busy(ClientError):
    code = "busy"

    def __init__(self) -> None:
        super().__init__("Another livepatch command is running; try again when it has finished.")


class CorruptState(ClientError):
    code = "corrupt-state"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"The state file {path} cannot be read ({reason}); remove it to reset.")
