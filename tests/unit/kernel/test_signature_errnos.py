"""Every errno the kernel's module signature check can return, and the sentence it becomes.

The set is pinned here by listing the errnos one by one: dropping one from
``SIGNATURE_ERRNOS`` turns its row into a generic load failure and fails.
"""

from __future__ import annotations

import errno

import pytest

from livepatch.kernel import LockdownRefused, ModuleLoadFailed, SignatureRejected
from livepatch.kernel.decisions import SIGNATURE_ERRNOS, LoadContext, load_error

CONTEXT = LoadContext("lp_fix", "6.1.0-56-amd64", "6.1.0-56-amd64", "none", False)
ADVICE = (
    "it only loads modules signed by a key it trusts, so enrol the patch signing "
    "certificate or use a correctly signed patch."
)


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        (errno.EKEYREJECTED, "EKEYREJECTED (Key was rejected by service)"),
        (errno.ENOKEY, "ENOKEY (Required key not available)"),
        (errno.EKEYEXPIRED, "EKEYEXPIRED (Key has expired)"),
        (errno.EKEYREVOKED, "EKEYREVOKED (Key has been revoked)"),
        (errno.EBADMSG, "EBADMSG (Bad message)"),
        (errno.ENOPKG, "ENOPKG (Package not installed)"),
        (errno.ENODATA, "ENODATA (No data available)"),
    ],
)
def test_each_signature_errno_is_a_signature_rejection(code: int, shown: str) -> None:
    error = load_error(code, CONTEXT)
    assert type(error) is SignatureRejected
    assert error.code == "signature-rejected"
    assert error.errno == code
    assert str(error) == f"The kernel rejected the signature of module lp_fix ({shown}); {ADVICE}"


def test_the_list_above_is_the_whole_set() -> None:
    listed = {
        errno.EKEYREJECTED,
        errno.ENOKEY,
        errno.EKEYEXPIRED,
        errno.EKEYREVOKED,
        errno.EBADMSG,
        errno.ENOPKG,
        errno.ENODATA,
    }
    assert listed == SIGNATURE_ERRNOS


@pytest.mark.parametrize("mode", ["integrity", "confidentiality"])
def test_eperm_under_lockdown_is_the_lockdown_refusing_an_untrusted_signature(mode: str) -> None:
    context = LoadContext("lp_fix", "6.1.0-56-amd64", None, mode, False)
    error = load_error(errno.EPERM, context)
    assert type(error) is LockdownRefused
    assert error.code == "lockdown-refused"
    assert error.errno == errno.EPERM
    assert str(error).startswith(
        f"Kernel lockdown ({mode} mode) refused module lp_fix because it is not "
    )


def test_an_errno_outside_the_set_is_a_generic_load_failure() -> None:
    error = load_error(errno.EIO, CONTEXT)
    assert type(error) is ModuleLoadFailed
    assert error.code != "signature-rejected"
