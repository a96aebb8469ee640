"""Property: whatever bytes arrive, the verifier answers with a verdict or a typed error."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livepatch.trust import errors, modsig
from tests.unit.trust.pki import NOW, Pki

_PKI = Pki("Fuzz")
_SIGNER = _PKI.issue("signing")
BODY = b"\x7fELF" + bytes(range(200))
SIGNED = modsig.sign_module(BODY, _SIGNER.key, _SIGNER.cert)
PKCS7 = SIGNED[len(BODY) : -40]
TRUSTED = [_SIGNER.cert]

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def verdict(data: bytes) -> str:
    """'ok' or the error's code; anything but a ModuleSignatureError escapes and fails."""
    try:
        modsig.verify_module(data, TRUSTED, now=NOW)
    except errors.ModuleSignatureError as error:
        assert str(error).endswith(".")
        return error.code
    return "ok"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(SIGNED)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_modules_never_verify_unless_unchanged(data: bytes) -> None:
    result = verdict(data)
    if result == "ok":
        assert data == SIGNED


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_pkcs7_gives_typed_errors(blob: bytes) -> None:
    assert verdict(BODY + blob + modsig.build_trailer(len(blob))) != "ok"


@FUZZ
@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(min_size=3, max_size=3),
    st.integers(0, 2**32 - 1),
)
def test_arbitrary_trailers_give_typed_errors(
    algo: int, id_type: int, key_id_len: int, pad: bytes, sig_len: int
) -> None:
    trailer = struct.pack(">BBBBB3sI", algo, 0, id_type, 0, key_id_len, pad, sig_len)
    result = verdict(BODY + PKCS7 + trailer + modsig.MAGIC)
    if result == "ok":
        assert trailer == SIGNED[-40:-28]


@FUZZ
@given(st.binary(max_size=80))
def test_short_inputs_give_typed_errors(prefix: bytes) -> None:
    assert verdict(prefix + modsig.MAGIC) != "ok"
    if not prefix.endswith(modsig.MAGIC):
        assert modsig.strip_signature(prefix) == prefix


@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(PKCS7) - 1), st.integers(0, 255))
def test_every_pkcs7_byte_matters(at: int, value: int) -> None:
    blob = bytearray(PKCS7)
    blob[at] = value
    result = verdict(BODY + bytes(blob) + modsig.build_trailer(len(blob)))
    assert (result == "ok") == (bytes(blob) == PKCS7)
