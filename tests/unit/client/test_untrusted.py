"""Server-supplied text is cleaned once, where it enters: fixed vectors."""

from __future__ import annotations

import pytest

from livepatch.client.untrusted import CODE_LIMIT, clean


@pytest.mark.parametrize(
    ("raw", "limit", "cleaned"),
    [
        ("token-revoked", 64, "token-revoked"),
        ("\x1b[2J\x1b[31mPWNED\x1b[0m", 64, "[2J[31mPWNED[0m"),  # ESC gone: inert text
        ("\x9b31mC1 CSI\x07bell\x7f", 64, "31mC1 CSIbell"),
        ("line one\nline two\r\n\tthree", 64, "line one line two three"),
        ("bidi \u202eevil\u202c and \u2066isolate\u2069", 64, "bidi evil and isolate"),
        ("zero\u200bwidth\ufeff\u00adsoft", 64, "zerowidthsoft"),
        ("para\u2029graph\u2028line", 64, "para graph line"),
        ("private \ue000 unassigned \U000e0001\U0010fffd", 64, "private unassigned"),
        ("   ", 64, ""),
        ("née: CVE-2024-1086 — ok", 64, "née: CVE-2024-1086 — ok"),
        ("abcdefghij", 5, "abcd…"),
        ("abcd efghij", 6, "abcd…"),
        (5005 * "x", CODE_LIMIT, 63 * "x" + "…"),
        (None, 10, "None"),
    ],
)
def test_clean(raw: object, limit: int, cleaned: str) -> None:
    assert clean(raw, limit) == cleaned


def test_the_result_is_never_longer_than_the_limit() -> None:
    assert len(clean("\u202e" * 10 + "y" * 1000, 300)) == 300
