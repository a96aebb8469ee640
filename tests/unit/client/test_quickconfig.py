"""`livepatch config` from the files: what the full path prints, or None when unsure."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from livepatch import cli
from livepatch.client import commands, config, quickconfig
from livepatch.client.paths import Paths


def test_keys_and_defaults_are_the_settings_models() -> None:
    assert quickconfig.KEYS == config.KEYS
    assert {
        key: getattr(config.Config(), key.replace("-", "_")) for key in config.KEYS
    } == quickconfig.DEFAULTS


SETTINGS = [
    config.Config(),
    config.Config(remote_server="https://patches.test", check_interval=15, tier="stable"),
    config.Config(
        remote_server="https://p.test",
        https_proxy="http://user:secret@proxy.test:3128",
        ca_certs="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_it_prints_what_the_full_path_prints(tmp_path: Path, settings: config.Config) -> None:
    paths = Paths(tmp_path)
    config.save(paths.config, settings)
    read = quickconfig.load(str(tmp_path))
    assert read is not None
    shown = commands.show_config(paths)
    assert quickconfig.render(read) == shown.text
    assert quickconfig.redacted(read) == shown.redacted


def test_without_root_it_reads_the_redacted_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.save(Paths(tmp_path).config, SETTINGS[2])
    real_open = open

    def as_a_user(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        if os.path.basename(path) == "config.json":
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", as_a_user)
    read = quickconfig.load(str(tmp_path))
    assert read is not None and quickconfig.redacted(read)
    assert read["https-proxy"] == "http://user:REDACTED@proxy.test:3128"


@pytest.mark.parametrize(
    "content",
    ["{", "[]", '{"check-interval": 0}', '{"check-interval": "5"}', '{"tier": 3}', "\udcff"],
)
def test_a_file_the_full_path_would_refuse_or_convert_takes_it(
    tmp_path: Path, content: str
) -> None:
    Path(tmp_path, "config.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    assert quickconfig.load(str(tmp_path)) is None


def test_cli_config_prints_the_settings_without_the_full_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config.save(Paths(tmp_path).config, dataclasses.replace(SETTINGS[1], no_proxy="a, b"))
    monkeypatch.setenv("LIVEPATCH_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(commands, "show_config", None)  # the full path would fail
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "remote-server: https://patches.test",
        "check-interval: 15",
        "http-proxy: ",
        "https-proxy: ",
        "no-proxy: a, b",
        "ca-certs: ",
        "tier: stable",
    ]


def test_help_is_argparses_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    expected = cli.build_parser().format_help()
    assert expected == cli.HELP
    assert cli.main(["--help"]) == 0
    assert capsys.readouterr().out == expected
