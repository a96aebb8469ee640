"""`snap set livepatch KEY=VALUE`: the configure hook's validation matrix.

Every key gets good values (saved, kept in snapd's configuration, and the
daemon is told to reload) and bad values (the hook fails with one sentence
naming the key, nothing is written, snapd keeps the old configuration, the
daemon hears nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from livepatch.client import commands
from livepatch.client import config as settings
from livepatch.client.errors import InvalidConfig
from livepatch.snap import hooks

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
A_FILE = object()
"""Stands for the path of an existing CA bundle (made in tmp_path by the test)."""

GOOD: list[tuple[str, Any, Any]] = [
    ("remote-server", "https://livepatch.example.com", "https://livepatch.example.com"),
    ("remote-server", "https://10.0.0.5:8443/", "https://10.0.0.5:8443"),
    ("check-interval", 30, 30),
    ("check-interval", "15", 15),
    ("check-interval", 1, 1),
    ("health-window", 120, 120),
    ("health-window", "5", 5),
    ("http-proxy", "http://proxy.example.com:3128", "http://proxy.example.com:3128"),
    ("http-proxy", "socks5h://proxy.example.com:1080", "socks5h://proxy.example.com:1080"),
    ("https-proxy", "https://user:secret@proxy.example.com:3128", None),
    ("https-proxy", "http://proxy.example.com:3128", "http://proxy.example.com:3128"),
    ("no-proxy", "localhost,127.0.0.1,.internal", "localhost,127.0.0.1,.internal"),
    ("no-proxy", "*", "*"),
    ("ca-certs", PEM, PEM.strip()),  # values are trimmed, as `livepatch config` trims them
    ("ca-certs", A_FILE, A_FILE),
    ("tier", "stable", "stable"),
    ("tier", "community", "community"),
]

BAD: list[tuple[str, Any, str]] = [
    ("remote-server", "http://livepatch.example.com", "remote-server must be a https URL"),
    ("remote-server", "livepatch.example.com", "remote-server must be a https URL"),
    ("remote-server", 8443, "remote-server must be a https URL, got '8443'"),
    ("remote-server", ["https://a.example"], "remote-server takes a single text value"),
    ("check-interval", 0, "check-interval must be a whole number of minutes, got '0'"),
    ("health-window", 0, "health-window must be a whole number of seconds from 1 to 86400"),
    ("health-window", "later", "health-window must be a whole number of seconds from 1 to 86400"),
    ("check-interval", -5, "check-interval must be a whole number of minutes"),
    ("check-interval", "soon", "check-interval must be a whole number of minutes, got 'soon'"),
    ("check-interval", 1.5, "check-interval takes a single text value or whole number, got 1.5"),
    ("check-interval", True, "check-interval takes a single text value or whole number, got true"),
    ("http-proxy", "ftp://proxy.example.com:21", "http-proxy must be a http/https/socks5/socks5h"),
    ("http-proxy", "proxy.example.com:3128", "http-proxy must be a http/https/socks5/socks5h"),
    ("https-proxy", "https://", "https-proxy must be a http/https/socks5/socks5h URL"),
    ("https-proxy", {"url": "http://p:1"}, "https-proxy takes a single text value"),
    ("no-proxy", ["localhost", "10.0.0.0/8"], "no-proxy takes a single text value"),
    ("no-proxy", False, "no-proxy takes a single text value or whole number, got false"),
    ("ca-certs", "/nonexistent/ca.pem", "ca-certs must be a PEM certificate bundle"),
    ("ca-certs", "BEGIN CERTIFICATE", "ca-certs must be a PEM certificate bundle"),
    ("tier", "gold", "tier must be one of community, stable, got 'gold'"),
    ("tier", 2, "tier must be one of community, stable, got '2'"),
]


def _resolve(value: Any, tmp_path: Path) -> Any:
    if value is A_FILE:
        bundle = tmp_path / "corporate-ca.pem"
        bundle.write_text(PEM)
        return str(bundle)
    return value


def _saved(env, key: str) -> Any:  # type: ignore[no-untyped-def]
    return getattr(settings.load(env.paths.config), key.replace("-", "_"))


def test_every_key_has_good_and_bad_cases():
    assert {key for key, _, _ in GOOD} == set(settings.KEYS)
    assert {key for key, _, _ in BAD} == set(settings.KEYS)


@pytest.mark.parametrize(("key", "value", "expected"), GOOD)
def test_a_good_value_is_saved_and_reaches_the_daemon(
    key, value, expected, env, snapd, daemon, tmp_path
):
    value = _resolve(value, tmp_path)
    expected = value if expected is None else _resolve(expected, tmp_path)
    if expected is A_FILE:
        expected = value
    snapd.snap_set(**{key: value})
    assert _saved(env, key) == expected
    assert snapd.config[key] == value  # snapd committed it
    assert daemon.commands == ["reload"]
    managed = json.loads((env.paths.root / hooks.MANAGED).read_text())
    assert key in managed
    assert str(value) not in (env.paths.root / hooks.MANAGED).read_text()  # names only


@pytest.mark.parametrize(("key", "value", "message"), BAD)
def test_a_bad_value_fails_clearly_and_changes_nothing(key, value, message, env, snapd, daemon):
    snapd.snap_set(remote_server="https://livepatch.example.com", tier="stable")
    before = {
        path.name: path.read_bytes() for path in env.paths.root.glob("*.json") if path.is_file()
    }
    config_before = snapd.config
    daemon.commands.clear()

    with pytest.raises(InvalidConfig) as caught:
        snapd.snap_set(**{key: value})

    text = str(caught.value)
    assert message in text
    assert key in text and text.count(". ") == 0 and text.endswith((".", "VALUE"))
    after = {
        path.name: path.read_bytes() for path in env.paths.root.glob("*.json") if path.is_file()
    }
    assert after == before
    assert snapd.config == config_before
    assert daemon.commands == []


def test_the_hook_exits_non_zero_with_the_message_on_stderr(env, snapd, capsys):
    environ = {"SNAP": str(env.snap), "SNAP_DATA": str(env.data), "SNAP_COMMON": str(env.common)}
    document = snapd.document()
    document["config"]["check-interval"] = "soon"
    snapd.write(document)
    code = hooks.main(["configure"], environ, hooks.Dependencies(snapctl=snapd.snapctl))
    assert code == 1
    err = capsys.readouterr().err
    assert "livepatch configure: check-interval must be a whole number of minutes" in err
    assert not env.paths.config.exists()
    assert "configure failed: check-interval" in env.journal.read_text()


def test_one_bad_value_among_good_ones_applies_none_of_them(env, snapd):
    with pytest.raises(InvalidConfig):
        snapd.snap_set(tier="stable", check_interval="soon", no_proxy="localhost")
    assert settings.load(env.paths.config) == settings.Config()
    assert snapd.config == {}


def test_unset_returns_a_key_to_its_default(env, snapd, daemon):
    snapd.snap_set(tier="stable", check_interval=15)
    snapd.snap_set(tier=None)
    config = settings.load(env.paths.config)
    assert (config.tier, config.check_interval) == ("", 15)
    assert json.loads((env.paths.root / hooks.MANAGED).read_text()) == ["check-interval"]
    assert daemon.commands == ["reload", "reload"]


def test_keys_never_set_through_snapd_keep_their_livepatch_config_value(env, snapd):
    env.paths.ensure()
    commands.set_config(env.paths, ["https-proxy=http://proxy.example.com:3128"])
    snapd.snap_set(tier="stable")
    config = settings.load(env.paths.config)
    assert (config.https_proxy, config.tier) == ("http://proxy.example.com:3128", "stable")


def test_a_pem_is_written_as_the_ca_bundle(env, snapd):
    snapd.snap_set(ca_certs=PEM)
    assert env.paths.ca_bundle.read_text() == PEM.strip()


def test_without_a_daemon_the_settings_are_still_saved(env, snapd):
    snapd.snap_set(check_interval=5)
    assert _saved(env, "check-interval") == 5


def test_no_snap_settings_writes_nothing(env, snapd):
    assert hooks.configure(env, snapd.snapctl) == {}
    assert not env.paths.config.exists()
