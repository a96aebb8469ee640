from __future__ import annotations

from pathlib import Path

import pytest

from livepatch.kernel import BuiltForAnotherKernel, WrongKernel, check_built_for
from livepatch.kernel.kmsg import LogRecord, boot_id, parse_record
from tests.unit.kernel.fakes import make_module


def test_a_record_is_priority_sequence_and_first_line() -> None:
    raw = b"4,1234,5678901,-;WARNING: CPU: 0 PID: 1 at kernel/x.c:1 f+0x1/0x2\n SUBSYSTEM=cpu\n"
    assert parse_record(raw) == LogRecord(
        1234, 4, "WARNING: CPU: 0 PID: 1 at kernel/x.c:1 f+0x1/0x2"
    )


def test_the_facility_is_masked_off_the_priority() -> None:
    # facility 1 (user) << 3 | priority 6: a line a program wrote to /dev/kmsg
    record = parse_record(b"14,7,100,-;hello\n")
    assert record is not None and (record.priority, record.seq) == (6, 7)


@pytest.mark.parametrize("raw", [b"", b"no header at all", b"4,x,1,-;text", b"4;text"])
def test_malformed_records_are_skipped(raw: bytes) -> None:
    assert parse_record(raw) is None


def test_boot_id_is_read_from_proc(tmp_path: Path) -> None:
    path = tmp_path / "proc/sys/kernel/random/boot_id"
    path.parent.mkdir(parents=True)
    path.write_text("0d3f1c1e-5b7a-4c3e-9d0a-2a7f7e1c9b11\n")
    assert boot_id(tmp_path) == "0d3f1c1e-5b7a-4c3e-9d0a-2a7f7e1c9b11"


def test_a_module_for_the_running_kernel_passes_the_vermagic_check() -> None:
    data = make_module("lp_fix", vermagic="6.1.0-56-amd64 SMP preempt mod_unload modversions ")
    assert check_built_for(data, "6.1.0-56-amd64").name == "lp_fix"


def test_a_module_for_another_kernel_is_refused_with_both_releases_named() -> None:
    data = make_module("lp_fix", vermagic="6.1.0-57-cloud-amd64 SMP mod_unload ")
    with pytest.raises(BuiltForAnotherKernel) as caught:
        check_built_for(data, "6.1.0-56-amd64")
    assert isinstance(caught.value, WrongKernel) and caught.value.code == "wrong-kernel"
    assert str(caught.value) == (
        "Module lp_fix was built for kernel 6.1.0-57-cloud-amd64, not for the running kernel "
        "6.1.0-56-amd64, so it was not loaded; use the patch made for 6.1.0-56-amd64."
    )


def test_a_module_without_vermagic_is_refused() -> None:
    with pytest.raises(BuiltForAnotherKernel, match="built without a vermagic"):
        check_built_for(make_module("lp_fix", vermagic=None), "6.1.0-56-amd64")


def test_syslog_text_becomes_the_messages_kmsg_would_give():
    from livepatch.kernel.kmsg import ring_buffer_lines

    raw = (
        b"<6>[    0.000000] Linux version 6.1.0-57-amd64\n"
        b"<4>[  721.581487] WARNING: CPU: 0 PID: 3257 at /tmp/x/livepatch_cmdline_warn.c:16 "
        b"livepatch_cmdline_proc_show+0x15/0x30 [livepatch_cmdline_warn]\n"
        b"<12>no timestamp here\n\n"
    )
    assert ring_buffer_lines(raw) == [
        "Linux version 6.1.0-57-amd64",
        "WARNING: CPU: 0 PID: 3257 at /tmp/x/livepatch_cmdline_warn.c:16 "
        "livepatch_cmdline_proc_show+0x15/0x30 [livepatch_cmdline_warn]",
        "no timestamp here",
    ]


def test_the_ring_buffer_is_read_through_syslog():
    from livepatch.kernel.kmsg import read_ring_buffer

    lines = read_ring_buffer()  # the test machine's own log (run as root, as make test is)
    assert lines and not any(line.startswith("<") for line in lines)
