"""A minimal, strict DER reader: just enough to walk a PKCS#7 SignedData.

Only definite, minimally encoded lengths and single-byte tags are accepted;
anything else is reported as ``DerError`` so that callers can turn it into
their own typed error. Nothing here allocates more than the input holds.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06


def context(number: int, *, constructed: bool = True) -> int:
    """The tag byte of ``[number]`` (IMPLICIT or EXPLICIT)."""
    return 0x80 | (0x20 if constructed else 0) | number


class DerError(ValueError):
    """The bytes are not the DER structure that was expected."""


@dataclass(frozen=True)
class Element:
    tag: int
    content: bytes
    encoded: bytes


class Reader:
    """Reads consecutive elements from a DER buffer."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def at_end(self) -> bool:
        return self._offset == len(self._data)

    def peek_tag(self) -> int | None:
        return None if self.at_end() else self._data[self._offset]

    def read(self, expected_tag: int | None = None) -> Element:
        data, start = self._data, self._offset
        if len(data) - start < 2:
            raise DerError("truncated element")
        tag = data[start]
        if tag & 0x1F == 0x1F:
            raise DerError("multi-byte tags are not supported")
        if expected_tag is not None and tag != expected_tag:
            raise DerError(f"expected tag 0x{expected_tag:02x}, found 0x{tag:02x}")
        first = data[start + 1]
        offset = start + 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4:
                raise DerError("indefinite or oversized length")
            if len(data) - offset < count:
                raise DerError("truncated length")
            length = int.from_bytes(data[offset : offset + count], "big")
            if length < 0x80 or data[offset] == 0:
                raise DerError("length not minimally encoded")
            offset += count
        end = offset + length
        if end > len(data):
            raise DerError("element runs past the end of its container")
        self._offset = end
        return Element(tag, data[offset:end], data[start:end])

    def read_all(self, expected_tag: int) -> list[Element]:
        elements = []
        while not self.at_end():
            elements.append(self.read(expected_tag))
        return elements

    def expect_end(self) -> None:
        if not self.at_end():
            raise DerError("unexpected trailing data")


def children(element: Element) -> Reader:
    return Reader(element.content)


def encode_oid(dotted: str) -> bytes:
    """The DER content octets of an object identifier."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_OID_CACHE: dict[bytes, str] = {}


def decode_oid(content: bytes) -> str:
    """Dotted form of an OID; the common ones are looked up, not decoded."""
    known = _OID_CACHE.get(content)
    if known is not None:
        return known
    return _decode_oid(content)


def remember_oids(*dotted: str) -> None:
    """Precompute OIDs that verification meets on every call."""
    for oid in dotted:
        _OID_CACHE[encode_oid(oid)] = oid


def _decode_oid(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise DerError("bad object identifier")
    arcs: list[int] = []
    value = 0
    for byte in content:
        if value == 0 and byte == 0x80:
            raise DerError("object identifier not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def decode_integer(content: bytes) -> int:
    if not content:
        raise DerError("empty integer")
    return int.from_bytes(content, "big", signed=True)


def read_algorithm(reader: Reader) -> tuple[str, Element | None]:
    """An AlgorithmIdentifier: its OID and its parameters, if any (uninterpreted)."""
    algorithm = children(reader.read(SEQUENCE))
    oid = decode_oid(algorithm.read(OID).content)
    parameters = None if algorithm.at_end() else algorithm.read()
    algorithm.expect_end()
    return oid, parameters
