"""JSON for the command line's fast paths, without importing `json`.

``import json`` costs about half of a bare Python's start-up, because its
decoder and encoder import ``re`` (and ``re`` imports ``enum``). The C
accelerator they use, ``_json``, needs neither: its scanner parses a whole
document, and its string encoder escapes exactly as ``json.dumps`` does. This
module wraps the two, so ``livepatch status`` and ``livepatch config`` read and
print JSON at the cost of one small import. Output is byte-for-byte
``json.dumps(value, indent=2)`` (ASCII, insertion order). ``_json`` is part
of every CPython build, the only Python the client ships with.
"""

from _json import encode_basestring_ascii as _quote
from _json import make_scanner as _make_scanner

TYPE_CHECKING = False  # typing costs ~10 ms; annotations only (see livepatch.cli)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Options:
    """The settings `_json.make_scanner` reads; those of ``json.loads`` without arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_OPTIONS: "Any" = _Options()  # typeshed wants a json scanner; any object with these attributes does
_scan: "Callable[[str, int], tuple[Any, int]]" = _make_scanner(_OPTIONS)


def loads(text: str) -> "Any":
    """The value of JSON document `text`; ValueError when it is not one."""
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise ValueError(f"Expecting value: char {stop.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def quote(text: str) -> str:
    """``json.dumps(text)``: the JSON string literal for `text`, ASCII only."""
    return _quote(text)


def dumps(value: "Any", indent: int = 2) -> str:
    """``json.dumps(value, indent=indent)`` for str keys and JSON's own value types."""
    parts: list[str] = []
    _encode(value, parts, "\n", " " * indent)
    return "".join(parts)


def _encode(value: "Any", parts: list[str], newline: str, step: str) -> None:
    if isinstance(value, str):
        parts.append(_quote(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_float(value))
    elif isinstance(value, dict):
        if not value:
            parts.append("{}")
            return
        inner = newline + step
        separator = "{" + inner
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            parts.append(separator + _quote(key) + ": ")
            _encode(item, parts, inner, step)
            separator = "," + inner
        parts.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            parts.append("[]")
            return
        inner = newline + step
        separator = "[" + inner
        for item in value:
            parts.append(separator)
            _encode(item, parts, inner, step)
            separator = "," + inner
        parts.append(newline + "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
