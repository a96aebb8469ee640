"""YAML for `livepatch status --format yaml`, without importing PyYAML.

PyYAML costs more than twice a bare Python's start-up. The status document
is only mappings, sequences, strings, integers, booleans and nulls, which
block-style YAML writes in a few lines. The output reads back (with any YAML
1.1 or 1.2 loader) as the same document; it is laid out as
``yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)`` lays it out,
except that long strings are not folded and a string that some YAML reader
might take for another type is quoted even where PyYAML would not (a
version such as 0.1.0 is a float to YAML 1.1's own definition).
"""

TYPE_CHECKING = False  # typing costs ~10 ms; annotations only (see livepatch.cli)
if TYPE_CHECKING:
    from typing import Any

# Characters a plain (unquoted) scalar may hold in block context, kept to ASCII;
# none of the indicators may start one, and ": " or " #" may not occur in one.
_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-/()+@,:;'=?!*&%<>~$^"
)
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`.(=~<$^;")
# YAML 1.1 words that read as booleans or null whatever their case.
_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf"})
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_NUMBER_CHARS = frozenset("0123456789_.eE+-:")


def _numeric(text: str) -> bool:
    """Whether a YAML 1.1 or 1.2 reader might take `text` for a number or a time."""
    digits = text.lstrip("+-")
    return (
        _NUMBER_CHARS.issuperset(text)  # 12, 1_000, 1.5, 1e3, 0.1.0 (1.1's float), 1:20
        or digits[:2].lower() in ("0x", "0o", "0b")
        or (len(text) > 4 and text[:4].isdigit() and text[4] == "-")  # 2024-01-01…
    )


def _plain(text: str) -> bool:
    """Whether `text` can be written unquoted and still read back as this string."""
    if not text or text != text.strip() or not _PLAIN.issuperset(text) or "  " in text:
        return False
    if text.lower() in _WORDS or text[0] in _INDICATORS:
        return False
    if ": " in text or text.endswith(":"):
        return False
    return not (text[0] in "0123456789+" and _numeric(text))


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, others escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def scalar(value: "Any") -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, str):
        if _plain(value):
            return value
        if value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        return _double_quoted(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML here")


def dumps(document: "dict[str, Any]") -> str:
    """The mapping `document` as block-style YAML."""
    lines: list[str] = []
    _mapping(document, "", "", lines)
    return "".join(line + "\n" for line in lines)


def _mapping(mapping: "dict[str, Any]", first: str, indent: str, lines: list[str]) -> None:
    """Lines of `mapping`; the first starts with `first` (a sequence's "- ")."""
    prefix = first
    for key, value in mapping.items():
        _entry(prefix + scalar(key) + ":", value, indent, lines)
        prefix = indent


def _entry(head: str, value: "Any", indent: str, lines: list[str]) -> None:
    if isinstance(value, dict) and value:
        lines.append(head)
        _mapping(value, indent + "  ", indent + "  ", lines)
    elif isinstance(value, list) and value:
        lines.append(head)
        for item in value:  # PyYAML's layout: items at the key's indentation
            if isinstance(item, dict) and item:
                _mapping(item, indent + "- ", indent + "  ", lines)
            elif isinstance(item, list) and item:
                raise TypeError("nested sequences are not written here")
            else:
                lines.append(indent + "- " + _flow(item))
    else:
        lines.append(head + " " + _flow(value))


def _flow(value: "Any") -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)
