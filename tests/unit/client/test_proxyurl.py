"""Proxy URLs: one strict shape; passwords redacted whatever characters they hold."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from requests.utils import get_auth_from_url

from livepatch.client import config as c
from livepatch.client import proxyurl
from livepatch.client.errors import InvalidConfig

PASSWORDS = ["p#ss", "p/ss", "p?ss", "p@ss", "50%off", "a#b/c?d@e%f:g", "s3cret"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_passwords_with_url_delimiters_are_redacted_in_the_public_copy(
    tmp_path: Path, password: str
) -> None:
    path = tmp_path / "config.json"
    value = f"http://alice:{password}@proxy.test:3128"
    config = c.assign(c.Config(), [("https-proxy", value), ("http-proxy", value)])
    c.save(path, config)
    public = c.public_path(path)
    text = public.read_text()
    assert password not in text
    assert json.loads(text)["https-proxy"] == "http://alice:REDACTED@proxy.test:3128"
    assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert c.load(path).https_proxy == value  # root's copy keeps it


@pytest.mark.parametrize("password", PASSWORDS)
def test_requests_gets_back_the_same_user_and_password(password: str) -> None:
    url = proxyurl.parse(f"http://alice:{password}@proxy.test:3128/").for_requests()
    assert url.endswith("@proxy.test:3128")
    assert get_auth_from_url(url) == ("alice", password)  # "50%off": a lone % is itself


def test_percent_escapes_are_decoded_once() -> None:
    url = proxyurl.parse("http://alice:p%40ss@proxy.test:3128").for_requests()
    assert get_auth_from_url(url) == ("alice", "p@ss")


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("http://proxy.test", ("http", "proxy.test", None, None, None)),
        ("https://proxy.test:3128/", ("https", "proxy.test", 3128, None, None)),
        ("HTTP://10.0.0.1:8080", ("http", "10.0.0.1", 8080, None, None)),
        ("http://[2001:db8::1]:3128", ("http", "[2001:db8::1]", 3128, None, None)),
        ("http://bob@proxy.test", ("http", "proxy.test", None, "bob", None)),
        ("http://:pw@proxy.test", ("http", "proxy.test", None, "", "pw")),
        ("socks5h://u:p@proxy.test:1080", ("socks5h", "proxy.test", 1080, "u", "p")),
        ("http://u:a@b#c/d?e@proxy.test:1", ("http", "proxy.test", 1, "u", "a@b#c/d?e")),
    ],
)
def test_accepted_shapes(value: str, parts: tuple[object, ...]) -> None:
    parsed = proxyurl.parse(value)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.user, parsed.password) == parts


@pytest.mark.parametrize(
    "value",
    [
        "proxy.test:3128",
        "ftp://proxy.test",
        "http://",
        "http://proxy.test:3128/path",
        "http://proxy.test/?q=1",
        "http://proxy.test#frag",
        "http://proxy.test:0",
        "http://proxy.test:65536",
        "http://proxy.test:31x8",
        "http://pro xy.test",
        "http://u:p w@proxy.test",
        "http://u:p\x1b@proxy.test",
        "http://-proxy.test",
        "http://proxy.test:3128//",
    ],
)
def test_refused_shapes(value: str) -> None:
    with pytest.raises(ValueError):
        proxyurl.parse(value)
    with pytest.raises(InvalidConfig, match=r"^http-proxy must be a http/https/socks5/socks5h URL"):
        c.assign(c.Config(), [("http-proxy", value)])


def test_a_refused_proxy_never_shows_its_password() -> None:
    with pytest.raises(InvalidConfig) as caught:
        c.assign(c.Config(), [("https-proxy", "http://alice:t0p#s3cret@proxy.test:3128/x")])
    assert "t0p" not in str(caught.value) and "s3cret" not in str(caught.value)
    assert "alice:REDACTED@proxy.test:3128/x" in str(caught.value)


def test_a_hand_edited_proxy_with_a_path_is_an_unreadable_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"https-proxy": "http://a:b@proxy.test:3128/x?y"}))
    with pytest.raises(InvalidConfig, match="is not a proxy URL") as caught:
        c.load(path)
    assert ":b@" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("alice:pw@proxy.test", "alice:REDACTED@proxy.test"),  # no scheme: still redacted
        ("http://a:b@c@proxy.test/x", "http://a:REDACTED@proxy.test/x"),
        ("http://proxy.test", "http://proxy.test"),
        ("http://bob@proxy.test", "http://bob@proxy.test"),
    ],
)
def test_redact(value: str, shown: str) -> None:
    assert proxyurl.redact(value) == shown
