from __future__ import annotations

import os
import re
import stat

import pytest

from livepatch.client import commands
from livepatch.client import config as c
from livepatch.client.errors import InvalidConfig
from livepatch.client.paths import Paths

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_defaults_render_as_key_value_lines_in_canonical_order():
    text = c.render(c.Config())
    keys = [line.split(":", 1)[0] for line in text.splitlines()]
    assert keys == list(c.KEYS)
    assert "check-interval: 60" in text.splitlines()
    assert all(re.match(r"^[a-z-]+: ", line) for line in text.splitlines())


def test_ubuntu_pro_can_read_values_back_with_its_regex():
    config = c.assign(c.Config(), [("https-proxy", "http://proxy.test:3128")])
    match = re.search(r"^https-proxy: (.*)$", c.render(config), re.MULTILINE)
    assert match and match.group(1).strip('"') == "http://proxy.test:3128"


def test_a_pem_value_stays_on_one_line_and_round_trips():
    config = c.assign(c.Config(), [("ca-certs", PEM)])
    lines = c.render(config).splitlines()
    assert len(lines) == len(c.KEYS)
    line = next(x for x in lines if x.startswith("ca-certs: "))
    import json

    assert json.loads(line.removeprefix("ca-certs: ")) == PEM


def test_empty_value_unsets():
    config = c.assign(c.Config(), [("http-proxy", "http://p:1"), ("check-interval", "5")])
    config = c.assign(config, [("http-proxy", ""), ("check-interval", "")])
    assert config == c.Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("remote-server", "Expected KEY=VALUE"),
        ("colour=blue", "Unknown config key 'colour'"),
    ],
)
def test_bad_assignments(text, message):
    with pytest.raises(InvalidConfig) as caught:
        c.parse_assignment(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("check-interval", "0", "whole number of minutes"),
        ("check-interval", "soon", "whole number of minutes"),
        ("remote-server", "http://plain.test", "must be a https URL"),
        ("remote-server", "patches.test", "must be a https URL"),
        ("https-proxy", "proxy:3128", "must be a http/https"),
        ("tier", "gold", "tier must be one of community, stable"),
        ("ca-certs", "/nonexistent/ca.pem", "PEM certificate bundle or the path"),
    ],
)
def test_invalid_values_say_what_is_expected(key, value, message):
    with pytest.raises(InvalidConfig) as caught:
        c.assign(c.Config(), [(key, value)])
    assert message in str(caught.value)


def test_remote_server_trailing_slash_is_dropped():
    assert c.assign(c.Config(), [("remote-server", "https://p.test/")]).remote_server == (
        "https://p.test"
    )


def test_proxies_in_requests_shape():
    config = c.assign(
        c.Config(), [("https-proxy", "http://p:3128"), ("no-proxy", "localhost,.internal")]
    )
    assert config.proxies() == {"https": "http://p:3128", "no_proxy": "localhost,.internal"}


def test_save_and_load_round_trip_private(tmp_path):
    path = tmp_path / "config.json"
    assert c.load(path) == c.Config()
    config = c.assign(c.Config(), [("tier", "stable"), ("check-interval", "15"), ("ca-certs", PEM)])
    c.save(path, config)
    assert c.load(path) == config
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"", "not valid JSON: Expecting value"),
        (b"{", "not valid JSON: Expecting property name"),
        (b"\xff{}", "not valid JSON: 'utf-8' codec can't decode byte 0xff"),
        (b"[]", "it must hold a JSON object"),
        (b'{"check-interval": "x"}', "check-interval is 'x', not a whole number of minutes"),
        (b'{"check-interval": 0}', "check-interval is 0, not a whole number of minutes"),
    ],
)
def test_garbage_config_file_is_reported_in_one_sentence(tmp_path, content, detail):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(InvalidConfig) as caught:
        c.load(path)
    message = str(caught.value)
    assert message.startswith(f"The config file {path} is unreadable ({detail}")
    assert message.endswith(
        "); set the settings again with `livepatch config KEY=VALUE` to fix it."
    )
    assert "\n" not in message


def test_livepatch_config_replaces_an_unreadable_file(tmp_path):
    paths = Paths(tmp_path / "state")
    paths.ensure()
    paths.config.write_text('{"remote-server": ')
    shown = commands.set_config(paths, ["remote-server=https://patches.test", "tier=stable"])
    assert "remote-server: https://patches.test" in shown.splitlines()
    assert c.load(paths.config) == c.Config(remote_server="https://patches.test", tier="stable")
    assert c.load_public(paths.config) == c.load(paths.config)


def test_a_bad_assignment_leaves_an_unreadable_file_as_it_was(tmp_path):
    paths = Paths(tmp_path / "state")
    paths.ensure()
    paths.config.write_text("{")
    with pytest.raises(InvalidConfig, match="check-interval must be a whole number"):
        commands.set_config(paths, ["check-interval=soon"])
    assert paths.config.read_text() == "{"


def test_the_public_copy_redacts_passwords_and_is_world_readable(tmp_path):
    path = tmp_path / "config.json"
    config = c.assign(
        c.Config(),
        [
            ("https-proxy", "http://alice:s3cret@proxy.test:3128"),
            ("http-proxy", "http://proxy.test:3128"),
            ("remote-server", "https://patches.test"),
        ],
    )
    c.save(path, config)
    public = c.public_path(path)
    assert public == tmp_path / "config.public.json"
    assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    assert "s3cret" not in public.read_text()
    shown = c.load_public(path)
    assert shown.https_proxy == "http://alice:REDACTED@proxy.test:3128"
    assert shown.http_proxy == "http://proxy.test:3128"
    assert shown.remote_server == "https://patches.test"
    assert c.load(path) == config  # the private file keeps the password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://proxy.test:3128", "http://proxy.test:3128"),
        ("http://bob@proxy.test", "http://bob@proxy.test"),
        ("http://bob:pw@proxy.test:8080/x", "http://bob:REDACTED@proxy.test:8080/x"),
        ("http://:pw@proxy.test", "http://:REDACTED@proxy.test"),
        ("", ""),
    ],
)
def test_redact_url(url, shown):
    assert c.redact_url(url) == shown
