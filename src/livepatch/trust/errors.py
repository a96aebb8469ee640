"""Every way trust can be refused, as typed errors with one plain sentence each.

Module signature errors say what is wrong with a module; key errors say what
is wrong with the key directory; update errors say why signed metadata or a
download was rejected. Callers match on the class (or its stable ``code``),
people read ``str(error)``.
"""

from __future__ import annotations

from livepatch.errors import LivepatchError


class TrustError(LivepatchError):
    """Base of everything livepatch.trust refuses."""

    code = "trust-error"


# Module signatures ------------------------------------------------------------


class ModuleSignatureError(TrustError):
    """The module's appended signature cannot be accepted."""

    code = "module-signature-error"


class NoSignature(ModuleSignatureError):
    code = "module-unsigned"

    def __init__(self) -> None:
        super().__init__(
            "The module carries no appended signature; sign it with "
            "'livepatch-admin sign' before publishing it."
        )


class MalformedSignature(ModuleSignatureError):
    code = "module-signature-malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"The module's signature is malformed ({detail}); re-sign the module from a clean copy."
        )


class UnsupportedAlgorithm(ModuleSignatureError):
    code = "module-signature-unsupported-algorithm"

    def __init__(self, what: str) -> None:
        super().__init__(
            f"The module is signed with an unsupported algorithm ({what}); re-sign it "
            "with SHA-256 and an RSA or ECDSA key."
        )


class UnknownSigner(ModuleSignatureError):
    code = "module-signer-unknown"

    def __init__(self, signer: str) -> None:
        super().__init__(
            f"The module was signed by a key that is not trusted ({signer}); only "
            "modules signed with a trusted module-signing certificate are accepted."
        )


class CertificateRevoked(ModuleSignatureError):
    code = "module-signer-revoked"

    def __init__(self, signer: str) -> None:
        super().__init__(
            f"The module was signed with the revoked certificate '{signer}'; re-sign it "
            "with a current module-signing certificate."
        )


class BadSignature(ModuleSignatureError):
    code = "module-signature-bad"

    def __init__(self, signer: str) -> None:
        super().__init__(
            f"The module's signature by '{signer}' does not match its contents, so the "
            "module was altered after signing; do not load it."
        )


class CertificateExpired(ModuleSignatureError):
    code = "module-signer-expired"

    def __init__(self, signer: str, not_after: str) -> None:
        super().__init__(
            f"The module-signing certificate '{signer}' expired on {not_after}; re-sign "
            "the module with a current certificate."
        )


class CertificateNotYetValid(ModuleSignatureError):
    code = "module-signer-not-yet-valid"

    def __init__(self, signer: str, not_before: str) -> None:
        super().__init__(
            f"The module-signing certificate '{signer}' is not valid before {not_before}; "
            "check the clock or wait until then."
        )


# Keys -----------------------------------------------------------------------------


class KeyDirectoryError(TrustError):
    """The key directory is missing, incomplete, unsafe or already initialised."""

    code = "key-directory-error"


# Update metadata ------------------------------------------------------------------


class UpdateError(TrustError):
    """Signed update metadata or a download was refused; the last good state is kept.

    ``reason`` names the underlying tuf error class when there is one.
    """

    code = "update-error"
    reason: str = ""


class MetadataRejected(UpdateError):
    """The repository served metadata that does not verify (an attack or a broken server)."""

    code = "metadata-rejected"


class DownloadFailed(UpdateError):
    """The transport failed: network, HTTP status, size limit or timeout."""

    code = "download-failed"


class UnknownTarget(UpdateError):
    code = "target-unknown"
