from __future__ import annotations

from typing import Any

import pytest

from livepatch.dbus.properties import (
    NOT_ENROLLED,
    SIGNATURES,
    BusProperties,
    changed,
    from_document,
)
from tests.unit.dbus.documents import APPLIED, document


def test_every_property_comes_from_the_document() -> None:
    props = from_document(APPLIED)
    assert props == BusProperties(
        State="applied",
        Kernel="6.1.0-56-amd64",
        Enrolled=True,
        Tier="community",
        LastCheck="2026-01-10T11:55:00Z",
        NextCheck="2026-01-10T12:55:00Z",
        AppliedPatches=("lp-6.1.0-56-amd64-3",),
        Fixes=(
            ("CVE-2024-1086", "high", True),
            ("CVE-2023-0266", "medium", True),
            ("CVE-2023-3390", "low", True),
        ),
        Errors=(),
    )


def test_dbus_shapes_cover_every_signature_in_order() -> None:
    values = from_document(APPLIED).as_dbus()
    assert list(values) == list(SIGNATURES)
    assert values["Fixes"][0] == ["CVE-2024-1086", "high", True]
    assert values["AppliedPatches"] == ["lp-6.1.0-56-amd64-3"]


def test_not_enrolled_machine_reads_disabled() -> None:
    props = from_document(document(Enrolled=False))
    assert props.State == NOT_ENROLLED
    assert props.Enrolled is False


def test_running_kernel_entry_wins_over_the_first() -> None:
    doc = document()
    other = {"Kernel": "6.1.0-55-amd64", "Running": False, "Livepatch": {"State": "unapplied"}}
    doc["Status"].insert(0, other)
    assert from_document(doc).Kernel == "6.1.0-56-amd64"
    assert from_document(doc).State == "applied"


def test_null_times_become_empty_strings() -> None:
    props = from_document(document(**{"Last-Check": None, "Next-Check": None}))
    assert (props.LastCheck, props.NextCheck) == ("", "")


def test_errors_keep_code_and_message() -> None:
    doc = document(Errors=[{"code": "signature-rejected", "message": "The kernel refused it."}])
    assert from_document(doc).Errors == (("signature-rejected", "The kernel refused it."),)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"Status": "x", "Errors": "y", "Applied-Patches": None, "Enrolled": "yes"},
        {"Status": [None, 3], "Enrolled": True},
        {"Status": [{"Livepatch": {"Fixes": [None, {"Patched": True}, {"Name": 5}]}}]},
        {"Applied-Patches": ["ok", 3, None], "Errors": [None, {"code": 1}]},
    ],
)
def test_garbage_gives_empty_values_not_errors(doc: dict[str, Any]) -> None:
    props = from_document(doc)
    assert props.Fixes == ()
    assert props.Kernel == ""
    assert props.AppliedPatches in ((), ("ok",))
    assert all(isinstance(code, str) for code, _ in props.Errors)


def test_changed_lists_only_the_properties_that_differ() -> None:
    old = from_document(APPLIED)
    new = from_document(document(**{"Last-Check": "2026-01-10T12:55:00Z"}, State="applying"))
    assert changed(old, new) == {"State": "applying", "LastCheck": "2026-01-10T12:55:00Z"}
    assert changed(new, new) == {}
