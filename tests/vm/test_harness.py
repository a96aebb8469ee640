"""Fast host-side checks of the VM harness (no VM is booted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kernel.selftest_sources import expected_logs
from tests.vm import VmError, emit, parse_results, run_in_vm
from tests.vm.modules import source_digest


def test_results_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"a": [1, 2]})
    output = "boot noise\n" + capsys.readouterr().out + "[ 12.3] more noise\n"
    assert parse_results(output) == {"a": [1, 2]}
    with pytest.raises(ValueError, match="no results line"):
        parse_results("nothing here")


def test_an_overlong_command_is_refused_before_booting() -> None:
    with pytest.raises(VmError, match="pass data in a file"):
        run_in_vm("echo " + "x" * 2000)


def test_digest_follows_contents_and_release(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("int x;")
    first = source_digest(tmp_path, "6.1.0-56-amd64")
    assert source_digest(tmp_path, "6.1.0-57-amd64") != first
    (tmp_path / "a.c").write_text("int y;")
    assert source_digest(tmp_path, "6.1.0-56-amd64") != first


def test_expected_logs_substitute_longest_names_first() -> None:
    script = (
        "MOD_TARGET=mod\nMOD_TARGET_BUSY=busy\n"
        'start_test "one"\nload_mod $MOD_TARGET_BUSY\n'
        'check_result "% modprobe $MOD_TARGET_BUSY\n${MOD_TARGET}: hi"\n'
        'start_test "no check"\n'
    )
    assert expected_logs(script) == {"one": "% modprobe busy\nmod: hi"}
