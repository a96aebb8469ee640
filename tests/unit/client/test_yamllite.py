"""yamllite writes YAML that reads back as the same document, laid out as PyYAML does."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from livepatch.client import yamllite

DOC = {
    "Client-Version": "0.1.0",
    "Machine-Id": "0123abcd",
    "Boot-Time": "2026-12-05T04:53:38Z",
    "Uptime": 886,
    "tier": "community",
    "Enrolled": True,
    "Status": [
        {
            "Kernel": "6.1.0-56-amd64",
            "UpgradeRequiredDate": None,
            "Livepatch": {
                "Version": "",
                "Fixes": [{"Name": "cve-2024-1086", "Description": "it's fixed: now"}],
            },
        }
    ],
    "Applied-Patches": [],
    "Errors": [{"code": "x", "message": "Cannot reach https://p.test (timed out); retry."}],
}


def test_the_status_layout_is_pyyamls() -> None:
    # One difference: YAML 1.1 defines 0.1.0 as a float (PyYAML does not read it so).
    expected = yaml.safe_dump(DOC, sort_keys=False, allow_unicode=True)
    expected = expected.replace("Client-Version: 0.1.0", "Client-Version: '0.1.0'")
    assert yamllite.dumps(DOC) == expected


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("0.1.0", "'0.1.0'"),
        ("0123abcd", "0123abcd"),
        ("1e3", "'1e3'"),
        ("2024-01-01", "'2024-01-01'"),
        ("\U0001f848", '"\\U0001f848"'),
        ("1.5", "'1.5'"),
        ("12", "'12'"),
        ("0x1f", "'0x1f'"),
        ("yes", "'yes'"),
        ("Off", "'Off'"),
        ("null", "'null'"),
        ("", "''"),
        ("a: b", "'a: b'"),
        ("- x", "'- x'"),
        ("tab\there", '"tab\\there"'),
        ("two\nlines", '"two\\nlines"'),
        ("6.1.0-56-amd64", "6.1.0-56-amd64"),
    ],
)
def test_strings_another_type_could_be_read_from_are_quoted(text: str, written: str) -> None:
    assert yamllite.scalar(text) == written
    assert yaml.safe_load(f"k: {written}") == {"k": text}


TEXT = st.text(st.characters(exclude_categories=("Cs",)))
SCALARS = st.none() | st.booleans() | st.integers() | TEXT
DOCS = st.dictionaries(
    TEXT,
    SCALARS
    | st.lists(SCALARS)
    | st.dictionaries(TEXT, SCALARS)
    | st.lists(st.dictionaries(TEXT, SCALARS | st.lists(st.dictionaries(TEXT, SCALARS)))),
)


@settings(deadline=None, max_examples=200)
@given(DOCS)
def test_it_reads_back_as_the_same_document(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(yamllite.dumps(doc)) == (doc or None)
