"""Text the patch service sent, made safe to store, print and send on.

Error codes and messages, patch descriptions and CVE text come from the
network (a hostile or broken service, or anyone between it and us) and end up
in state.json, ``livepatch status`` for every local user, D-Bus signals and
the login message. ``clean`` is applied once, where such text enters the
client (``livepatch.client.api`` and ``livepatch.client.metadata``): it drops
control characters (terminal escape sequences lose their ESC and become inert
text), format characters (bidi overrides and isolates, zero-width joiners) and
unassigned or private code points, folds any whitespace run into one space
and cuts the result to a length limit.
"""

from __future__ import annotations

import unicodedata

CODE_LIMIT = 64
"""Error codes are identifiers such as ``token-revoked``."""
MESSAGE_LIMIT = 300
SENTENCE_LIMIT = 800
"""One of our own sentences that quotes untrusted text (a tuf error, say)."""
TEXT_LIMIT = 500
"""Patch and CVE descriptions."""
NAME_LIMIT = 128
"""Identifiers shown to people: patch ids, versions, CVE ids, severities, tiers."""

_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_ELLIPSIS = "…"


def clean(text: object, limit: int) -> str:
    """`text` as one line of at most `limit` printable characters."""
    kept = []
    for char in str(text):
        if char.isspace():
            kept.append(" ")
        elif unicodedata.category(char) not in _DROPPED:
            kept.append(char)
    line = " ".join("".join(kept).split())
    if len(line) <= limit:
        return line
    return line[: max(limit - 1, 0)].rstrip() + _ELLIPSIS
