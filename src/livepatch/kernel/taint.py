"""Kernel taint flags, decoded by name (include/linux/panic.h, kernel/panic.c)."""

from __future__ import annotations

from typing import NamedTuple


class TaintFlag(NamedTuple):
    bit: int
    letter: str
    name: str
    description: str


TAINT_FLAGS: tuple[TaintFlag, ...] = (
    TaintFlag(0, "P", "PROPRIETARY_MODULE", "a proprietary module was loaded"),
    TaintFlag(1, "F", "FORCED_MODULE", "a module was force-loaded"),
    TaintFlag(2, "S", "CPU_OUT_OF_SPEC", "the CPU runs out of specification"),
    TaintFlag(3, "R", "FORCED_RMMOD", "a module was force-unloaded"),
    TaintFlag(4, "M", "MACHINE_CHECK", "a machine check exception occurred"),
    TaintFlag(5, "B", "BAD_PAGE", "a bad page was referenced"),
    TaintFlag(6, "U", "USER", "tainted on request of user space"),
    TaintFlag(7, "D", "DIE", "the kernel died recently (oops or BUG)"),
    TaintFlag(8, "A", "OVERRIDDEN_ACPI_TABLE", "an ACPI table was overridden"),
    TaintFlag(9, "W", "WARN", "the kernel issued a warning"),
    TaintFlag(10, "C", "CRAP", "a staging driver was loaded"),
    TaintFlag(11, "I", "FIRMWARE_WORKAROUND", "a platform firmware bug is worked around"),
    TaintFlag(12, "O", "OOT_MODULE", "an externally built (out-of-tree) module was loaded"),
    TaintFlag(13, "E", "UNSIGNED_MODULE", "an unsigned module was loaded"),
    TaintFlag(14, "L", "SOFTLOCKUP", "a soft lockup occurred"),
    TaintFlag(15, "K", "LIVEPATCH", "the kernel has been live patched"),
    TaintFlag(16, "X", "AUX", "an auxiliary taint, defined by the distribution"),
    TaintFlag(17, "T", "RANDSTRUCT", "the kernel was built with the struct randomization plugin"),
    TaintFlag(18, "N", "TEST", "an in-kernel test was run"),
)


def decode_taint(value: int) -> list[TaintFlag]:
    """The named flags set in `value`; unknown bits come back as ``BIT_<n>``."""
    known = {flag.bit: flag for flag in TAINT_FLAGS}
    flags = []
    for bit in range(value.bit_length()):
        if value >> bit & 1:
            flags.append(known.get(bit) or TaintFlag(bit, "?", f"BIT_{bit}", "unknown flag"))
    return flags
