"""jsonlite reads and writes exactly as json does, for the values the client has."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livepatch.client import jsonlite

TEXT = st.text(st.characters(exclude_categories=("Cs",)))
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner),
    max_leaves=30,
)


@settings(deadline=None, max_examples=200)
@given(VALUES)
def test_dumps_is_json_dumps_with_indent_2(value: Any) -> None:
    assert jsonlite.dumps(value) == json.dumps(value, indent=2)


@settings(deadline=None, max_examples=200)
@given(VALUES)
def test_loads_reads_what_json_writes(value: Any) -> None:
    text = json.dumps(value)
    assert jsonlite.dumps(jsonlite.loads(text)) == jsonlite.dumps(json.loads(text))


def test_a_fixed_document() -> None:
    doc = {"a": [1, 2.5, None, True, {"x": 'é\n"', "y": []}], "b": {}}
    assert jsonlite.dumps(doc) == (
        '{\n  "a": [\n    1,\n    2.5,\n    null,\n    true,\n    {\n'
        '      "x": "\\u00e9\\n\\"",\n      "y": []\n    }\n  ],\n  "b": {}\n}'
    )
    assert jsonlite.loads(' \n{"a": [1, -2.5e3, "\\u00e9"], "b": null}\t') == {
        "a": [1, -2500.0, "é"],
        "b": None,
    }


@pytest.mark.parametrize("text", ["", " ", "{", "[1] x", '"a', "{'a': 1}", "nul", "\ufeff{}"])
def test_garbage_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsonlite.loads(text)


def test_what_json_cannot_write_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        jsonlite.dumps({"a": object()})
    with pytest.raises(TypeError):
        jsonlite.dumps({1: "a"})
