"""Proxy URLs, parsed strictly, and their passwords kept out of sight.

A proxy setting has one shape: ``SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/]``.
Anything else (a path, a query, a fragment, spaces, a port out of range) is
refused, so what the client uses is what the administrator meant. The
password may hold any printable character, ``#``, ``/``, ``?``, ``@`` and
``%`` included: the user information runs to the *last* ``@`` and the
password from the first ``:`` in it. ``%`` followed by two hex digits is a
percent-escape (RFC 3986), any other ``%`` is itself. ``for_requests`` gives
the URL with the user information percent-encoded, the form requests
decodes back to the same user and password; ``redact`` replaces the password
with ``REDACTED``, also in values that do not parse (a hand-edited file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

REDACTED = "REDACTED"
SCHEMES = ("http", "https", "socks5", "socks5h")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(
    rf"(?P<host>\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*\.?)(?::(?P<port>[0-9]{{1,5}}))?/?"
)
_PRINTABLE = re.compile(r"[^\x00-\x20\x7f-\x9f]*")


@dataclass(frozen=True)
class ProxyUrl:
    scheme: str
    host: str
    port: int | None = None
    user: str | None = None
    password: str | None = None

    def _address(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def for_requests(self) -> str:
        """The URL with user and password percent-encoded, as requests expects it."""
        if self.user is None:
            return f"{self.scheme}://{self._address()}"
        userinfo = quote(unquote(self.user), safe="")
        if self.password is not None:
            userinfo += ":" + quote(unquote(self.password), safe="")
        return f"{self.scheme}://{userinfo}@{self._address()}"


def parse(value: str, schemes: tuple[str, ...] = SCHEMES) -> ProxyUrl:
    """`value` as a ProxyUrl; ValueError saying what is wrong (never quoting a password)."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in schemes:
        raise ValueError(f"the scheme must be one of {', '.join(schemes)}")
    userinfo, at, address = rest.rpartition("@")
    match = _HOST.fullmatch(address)
    if match is None:
        raise ValueError("expected a host name or address, an optional :port and nothing after")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"port {port} is out of range")
    if not at:
        return ProxyUrl(scheme.lower(), match.group("host"), int(port) if port else None)
    if _PRINTABLE.fullmatch(userinfo) is None:
        raise ValueError("the user name and password must not hold spaces or control characters")
    user, colon, password = userinfo.partition(":")
    return ProxyUrl(
        scheme.lower(),
        match.group("host"),
        int(port) if port else None,
        user,
        password if colon else None,
    )


def redact(value: str) -> str:
    """`value` with any password replaced by REDACTED (parsed or not)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    userinfo, at, address = rest.rpartition("@")
    if not at:
        return value
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return value
    return f"{scheme}{sep}{user}:{REDACTED}@{address}"
