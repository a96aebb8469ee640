"""The health verdict, on kernel-log excerpts shaped like Debian 6.1's reports."""

from __future__ import annotations

from livepatch.client.health import clean, judge, new_taint_letters, reports

LOADED = 45056  # O + E + K: what loading an unsigned out-of-tree livepatch sets
BUG_IN_PATCH = """\
livepatch: 'livepatch_cmdline_bug': starting patching transition
livepatch: 'livepatch_cmdline_bug': patching complete
------------[ cut here ]------------
kernel BUG at /tmp/build/livepatch_cmdline_bug.c:14!
invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
CPU: 0 PID: 91 Comm: cat Tainted: G           OE K    6.1.0-28-amd64 #1  Debian 6.1.119-1
RIP: 0010:livepatch_cmdline_show+0x9/0x10 [livepatch_cmdline_bug]
Call Trace:
 <TASK>
 seq_read_iter+0x11f/0x440
Modules linked in: livepatch_cmdline_bug(OEK) 9p netfs
---[ end trace 0000000000000000 ]---""".splitlines()
WARNING_ELSEWHERE = """\
------------[ cut here ]------------
WARNING: CPU: 0 PID: 12 at drivers/net/virtio_net.c:100 virtnet_poll+0x1/0x2 [virtio_net]
Modules linked in: livepatch_cmdline_v1(OEK) virtio_net 9p
RIP: 0010:virtnet_poll+0x1/0x2 [virtio_net]
---[ end trace 0000000000000000 ]---""".splitlines()


def verdict(log, *, after=LOADED, enabled=True, module="livepatch_cmdline_bug"):
    return judge(
        module=module,
        functions=("cmdline_proc_show",),
        taint_before=LOADED,
        taint_after=after,
        log=log,
        enabled=enabled,
    )


def test_a_quiet_log_and_unchanged_taint_is_healthy():
    result = verdict(["livepatch: 'livepatch_cmdline_bug': patching complete"])
    assert result.healthy and result.name == "healthy" and result.evidence == ""


def test_a_bug_naming_the_module_is_unhealthy_with_its_lines_and_new_taint():
    result = verdict(BUG_IN_PATCH, after=LOADED | 1 << 7)
    assert result.name == "unhealthy"
    assert result.evidence == (
        "kernel BUG at /tmp/build/livepatch_cmdline_bug.c:14! | "
        "RIP: 0010:livepatch_cmdline_show+0x9/0x10 [livepatch_cmdline_bug]; new taint D"
    )


def test_a_warning_in_another_module_does_not_blame_the_patch():
    # the "Modules linked in" line names every module, ours too: it does not count
    result = verdict(WARNING_ELSEWHERE, module="livepatch_cmdline_v1")
    assert result.healthy


def test_a_report_naming_a_replaced_function_counts():
    log = [
        "BUG: unable to handle page fault for address: 0000000000000008",
        "RIP: 0010:cmdline_proc_show+0x12/0x30",
        "---[ end trace 0000000000000000 ]---",
    ]
    result = verdict(log, module="livepatch_other")
    assert not result.healthy
    assert result.evidence.startswith("BUG: unable to handle page fault")


def test_a_function_name_inside_a_longer_symbol_does_not_count():
    log = [
        "WARNING: CPU: 0 PID: 1 at fs/proc/x.c:1 my_cmdline_proc_show_helper+0x1/0x2",
        "---[ end trace 0000000000000000 ]---",
    ]
    assert verdict(log, module="livepatch_other").healthy


def test_new_warning_taint_alone_is_unhealthy():
    result = verdict([], after=LOADED | 1 << 9)
    assert not result.healthy and result.evidence == "new taint W"


def test_taint_flags_loading_itself_sets_say_nothing():
    assert new_taint_letters(0, LOADED) == ""
    # D (bit 7), W (9), L (14) in HEALTH_TAINTS order; B (5) and M (4) too
    assert new_taint_letters(LOADED, LOADED | 1 << 14 | 1 << 9 | 1 << 7) == "DWL"
    assert new_taint_letters(1 << 9, 1 << 9 | 1 << 5 | 1 << 4) == "BM"


def test_a_patch_disabled_by_someone_else_is_unhealthy():
    result = verdict([], enabled=False)
    assert (
        result.evidence == "livepatch livepatch_cmdline_bug was disabled or removed by someone else"
    )


def test_reports_are_cut_at_their_end_marker():
    found = reports(["x", *BUG_IN_PATCH, "after the report"])
    assert len(found) == 1
    assert found[0][0] == "kernel BUG at /tmp/build/livepatch_cmdline_bug.c:14!"
    assert found[0][-1].startswith("---[ end trace")


def test_evidence_is_one_printable_line_of_at_most_1024_characters():
    assert clean("a\tb\x1b[31mc\nd") == "a b [31mc d"
    long = clean("x" * 5000)
    assert len(long) == 1024 and long.endswith("…")


def test_an_unreadable_log_is_said_and_names_the_plug_while_taint_still_counts():
    quiet = verdict(None)
    assert quiet.healthy
    assert quiet.evidence == (
        "the kernel log was not readable, so only the taint and the enabled state were "
        "checked (inside the snap, connect its log-observe and kernel-module-control plugs: "
        "sudo snap connect livepatch:log-observe)"
    )
    tainted = verdict(None, after=LOADED | 1 << 9)
    assert not tainted.healthy
    assert tainted.evidence.startswith("new taint W; the kernel log was not readable")


def test_the_port_answers_none_when_the_kernel_log_cannot_be_opened(tmp_path):
    from livepatch.client.kernelport import KernelAdapter

    assert KernelAdapter(root=tmp_path).log_since(-1) is None  # no dev/kmsg under this root
