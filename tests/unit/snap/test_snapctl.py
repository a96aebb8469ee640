"""The snapctl wrapper against the stand-in, which follows snapd's rules."""

from __future__ import annotations

import json

import pytest

from livepatch.snap.snapctl import Snapctl, SnapctlError, health_code, shorten
from tests.snap import STANDIN_SNAPCTL


@pytest.fixture
def snapctl(tmp_path, monkeypatch):
    monkeypatch.setenv("SNAPCTL_STATE", str(tmp_path / "state.json"))
    return Snapctl(str(STANDIN_SNAPCTL))


def test_get_returns_the_set_keys_with_their_json_types(snapctl):
    snapctl.run(["set", "check-interval=30", "tier=stable", "no-proxy=10.0.0.1,localhost"])
    assert snapctl.get(["check-interval", "tier", "remote-server", "no-proxy"]) == {
        "check-interval": 30,
        "tier": "stable",
        "no-proxy": "10.0.0.1,localhost",
    }
    assert snapctl.get(["tier"]) == {"tier": "stable"}  # -d: a document even for one key


def test_set_keeps_types_and_unset_removes(snapctl):
    snapctl.set({"check-interval": 60, "tier": "true"})
    assert snapctl.get(["check-interval", "tier"]) == {"check-interval": 60, "tier": "true"}
    snapctl.run(["unset", "tier"])
    assert snapctl.get(["tier"]) == {}


def test_a_failing_snapctl_raises_with_its_message(snapctl):
    with pytest.raises(SnapctlError, match="snapctl get failed: error: get which option"):
        snapctl.get([])


def test_a_missing_snapctl_is_a_clear_error(tmp_path):
    with pytest.raises(SnapctlError, match="Running snapctl get failed"):
        Snapctl(str(tmp_path / "nowhere" / "snapctl")).get(["tier"])


def test_garbage_output_is_an_error(tmp_path):
    fake = tmp_path / "snapctl"
    fake.write_text("#!/bin/sh\necho '[1, 2]'\n")
    fake.chmod(0o755)
    with pytest.raises(SnapctlError, match="printed list, not an object"):
        Snapctl(str(fake)).get(["tier"])


def test_stand_in_records_calls(snapctl, tmp_path):
    snapctl.set({"tier": "stable"})
    calls = json.loads((tmp_path / "state.json").read_text())["calls"]
    assert calls == [["set", "-t", 'tier="stable"']]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("access-denied", "access-denied"),
        ("Signature_Rejected", "signature-rejected"),
        ("x", ""),
        ("--", ""),
        ("9lives", ""),
        ("a" * 40, "a" * 30),
    ],
)
def test_health_code(text, code):
    assert health_code(text) == code


def test_shorten():
    assert shorten("x" * 70) == "x" * 70
    assert shorten("x" * 71) == "x" * 69 + "…"
