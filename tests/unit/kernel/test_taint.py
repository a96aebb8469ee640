from __future__ import annotations

from livepatch.kernel import decode_taint
from livepatch.kernel.taint import TAINT_FLAGS


def test_unsigned_out_of_tree_livepatch_taint() -> None:
    # Measured on Debian's 6.1 after loading an unsigned livepatch (TESTING.md).
    names = [flag.name for flag in decode_taint(45056)]
    assert names == ["OOT_MODULE", "UNSIGNED_MODULE", "LIVEPATCH"]


def test_no_taint_and_unknown_bits() -> None:
    assert decode_taint(0) == []
    unknown = decode_taint(1 << 40)
    assert [(flag.bit, flag.name) for flag in unknown] == [(40, "BIT_40")]


def test_table_covers_every_kernel_bit_with_unique_letters() -> None:
    assert [flag.bit for flag in TAINT_FLAGS] == list(range(19))
    assert len({flag.letter for flag in TAINT_FLAGS}) == 19
