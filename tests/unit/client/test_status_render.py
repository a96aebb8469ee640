from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta

import pytest
import yaml

from livepatch.client import transitions as t
from livepatch.client.host import HostFacts
from livepatch.client.planner import Apply, NothingToApply
from livepatch.client.render import render_human, render_json, render_yaml
from livepatch.client.state import (
    CheckState,
    Enrolment,
    ErrorRecord,
    PatchState,
    State,
)
from livepatch.client.status import KernelFacts, document
from tests.unit.client.fakes import KERNEL, T0, patch
from tests.unit.client.schema import validate

HOST = HostFacts("QEMU Virtual CPU", T0 - timedelta(days=3), 3 * 86400)
FACTS = KernelFacts(KERNEL, KERNEL, "amd64")
ENROLMENT = Enrolment("m-1", "community", "https://p.test", T0)
KEY_VALUE = re.compile(r"^[a-z0-9][a-z0-9 .-]*: \S")


def states() -> dict[str, State]:
    enrolled = State(enrolment=ENROLMENT, kernel=KERNEL)
    p3, p4 = patch("3", cves=["CVE-2024-1086", "CVE-2024-2"]), patch("4", cves=["CVE-2024-3"])
    applied = t.apply_succeeded(
        t.planned(enrolled, Apply(p3), KERNEL, T0),
        t.record(p3, KERNEL),
        t.Report(p3.patch_id, KERNEL, "applied"),
    )
    newer_failed = t.apply_failed(
        t.applying(t.planned(applied, Apply(p4), KERNEL, T0), t.record(p4, KERNEL)),
        ErrorRecord("signature-failure", "Patch lp failed signature verification; not loaded."),
        None,
    )
    return {
        "not-enabled": State(),
        "fresh": enrolled,
        "applied": t.scheduled(applied, T0 + timedelta(hours=1)),
        "nothing": t.planned(enrolled, NothingToApply(), KERNEL, T0),
        "failed": newer_failed,
        "check-failed": t.check_failed(
            enrolled, ErrorRecord("service-unreachable", "x: y"), T0, retryable=True
        ),
    }


def doc_for(name: str, running: bool = True) -> dict:
    return document(
        states()[name], kernel=FACTS, host=HOST, tier="community", daemon_running=running
    )


@pytest.mark.parametrize("name", list(states()))
def test_every_document_validates_against_the_schema(name):
    doc = doc_for(name)
    assert validate(doc) == []
    assert validate(json.loads(render_json(doc))) == []


def test_schema_checker_catches_the_type_error_ubuntu_pro_rejects():
    doc = doc_for("applied")
    doc["Status"][0]["Supported"] = True
    assert validate(doc) != []
    del doc["Status"][0]["Livepatch"]["Version"]
    assert any("missing Version" in e for e in validate(doc))


def test_applied_document_has_the_fields_ubuntu_pro_reads():
    doc = doc_for("applied")
    entry = doc["Status"][0]
    assert entry["Kernel"] == KERNEL and entry["Supported"] == "supported"
    assert entry["Livepatch"]["State"] == "applied"
    assert entry["Livepatch"]["Version"] == "3"
    assert {(f["Name"], f["Patched"]) for f in entry["Livepatch"]["Fixes"]} == {
        ("cve-2024-1086", True),
        ("cve-2024-2", True),
    }
    assert doc["Applied-Patches"] == [patch("3").patch_id]
    assert doc["Next-Check"] == "2026-08-01T13:00:00Z"
    assert doc["Enrolled"] is True and doc["Machine-Id"] == "m-1"


def test_failed_newer_patch_lists_its_fixes_as_unpatched_and_the_error():
    doc = doc_for("failed")
    fixes = {f["Name"]: f["Patched"] for f in doc["Status"][0]["Livepatch"]["Fixes"]}
    assert fixes == {"cve-2024-1086": True, "cve-2024-2": True, "cve-2024-3": False}
    assert doc["Status"][0]["Livepatch"]["State"] == "apply-failed"
    assert doc["Errors"][0]["code"] == "signature-failure"


def test_not_enabled_document():
    doc = doc_for("not-enabled")
    assert doc["Enrolled"] is False and doc["Machine-Id"] == "" and doc["tier"] == ""
    assert doc["Status"][0]["Livepatch"]["State"] == "unapplied"


@pytest.mark.parametrize("name", list(states()))
@pytest.mark.parametrize("verbose", [False, True])
def test_humane_output_is_key_value_lines_only(name, verbose):
    text = render_human(doc_for(name), verbose=verbose, now=T0)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert KEY_VALUE.match(line), line


def test_human_lines_for_an_applied_machine():
    lines = render_human(doc_for("applied"), now=T0).splitlines()
    assert "kernel: 6.1.0-56-amd64" in lines
    assert "patch state: ✓ all applicable livepatch modules applied" in lines
    assert "patch version: 3" in lines
    assert "fix cve-2024-1086: ✓ patched, severity high" in lines
    assert "next check: 2026-08-01T13:00:00Z (in 1 hour)" in lines
    assert "daemon: running" in lines


def test_description_with_newlines_and_colons_keeps_the_rule():
    doc = doc_for("applied")
    doc["Status"][0]["Livepatch"]["Fixes"][0]["Description"] = "line one\nkey: two\n\n"
    doc["Errors"] = [{"code": "x", "message": "a\nb: c"}]
    for line in render_human(doc, verbose=True, now=T0).splitlines():
        assert KEY_VALUE.match(line), line


def test_colour_only_wraps_values_and_ascii_fallback():
    coloured = render_human(doc_for("applied"), colour=True, now=T0)
    assert "patch state: \033[32m✓" in coloured
    plain = render_human(doc_for("applied"), unicode=False, now=T0)
    assert "patch state: + all applicable livepatch modules applied" in plain
    assert "\033[" not in plain


def test_check_failed_and_daemon_down_are_said():
    lines = render_human(doc_for("check-failed", running=False), now=T0).splitlines()
    assert "server check-in: ✗ failed" in lines
    assert "daemon: not running" in lines
    assert "error service-unreachable: x: y" in lines


def test_yaml_has_the_same_facts():
    doc = doc_for("applied")
    assert yaml.safe_load(render_yaml(doc)) == doc


def test_check_state_values():
    assert doc_for("fresh")["Status"][0]["Livepatch"]["CheckState"] == CheckState.NEEDS_CHECK
    state = replace(states()["fresh"], patch_state=PatchState.APPLYING)
    doc = document(state, kernel=FACTS, host=HOST, tier="stable", daemon_running=True)
    assert doc["Status"][0]["Livepatch"]["State"] == "applying" and doc["tier"] == "stable"


@pytest.mark.parametrize(
    ("stamp", "epoch"),
    [
        ("1970-01-01T00:00:00Z", 0.0),
        ("2026-08-01T12:00:00.123456Z", 1785585600.123456),
        ("2000-02-29T23:59:59+05:30", 951848999.0),
        ("2024-03-01T00:00:00Z", 1709251200.0),
        ("1969-12-31T23:00:00-01:00", 0.0),
        ("2026-08-01 12:00:00+00:00", 1785585600.0),  # not the document's form: datetime
    ],
)
def test_times_are_read_without_datetime_in_the_documents_form(stamp: str, epoch: float) -> None:
    from livepatch.client.render import _epoch

    assert _epoch(stamp) == pytest.approx(epoch, abs=1e-6)
