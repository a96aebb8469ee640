"""The post-refresh self-test: each check passes on a sound revision and fails on a broken one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from livepatch import __version__
from livepatch.client import commands
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.state import StateFile
from livepatch.kernel import LivepatchDriver
from livepatch.snap import selftest
from tests.unit.client.fakes import make_world, patch
from tests.unit.kernel.fakes import FakeKernel, FakeSyscalls, deny

VENV_BIN = Path(sys.executable).parent


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(("lock", "daemon.pid"))
    }


def enrolled(tmp_path: Path):
    world = make_world(tmp_path)
    world.metadata.patches_list.append(patch("3", module="livepatch_cve_2024_1086"))
    rt = world.runtime()
    commands.enable(rt, "good-token")
    (rt.paths.metadata / "root.json").write_text(json.dumps({"signed": {"_type": "root"}}))
    return rt


def kernel(tmp_path: Path) -> tuple[FakeKernel, KernelAdapter]:
    root = tmp_path / "kernel"
    root.mkdir()
    fake = FakeKernel(root)
    fake.add_patch("livepatch_cve_2024_1086")
    driver = LivepatchDriver(root, syscalls=FakeSyscalls(fake), clock=fake.clock, sleep=fake.sleep)
    return fake, KernelAdapter(root, driver=driver)


def test_imports_pass_for_this_tree_and_name_what_fails():
    assert selftest.check_imports().ok
    check = selftest.check_imports(["livepatch.cli", "livepatch.not_a_module"])
    assert not check.ok
    assert "cannot import livepatch.not_a_module (ModuleNotFoundError" in check.detail


def test_state_and_config_checks_catch_corrupt_files(tmp_path):
    rt = enrolled(tmp_path)
    assert selftest.check_state(rt.paths).ok and selftest.check_config(rt.paths).ok
    rt.paths.state.write_text("{not json")
    rt.paths.config.write_text("[]")
    assert not selftest.check_state(rt.paths).ok
    check = selftest.check_config(rt.paths)
    assert not check.ok and "must hold a JSON object" in check.detail


def test_keys_need_the_pinned_root_and_the_credential_once_enrolled(tmp_path):
    rt = enrolled(tmp_path)
    assert selftest.check_keys(rt.paths).ok
    (rt.paths.metadata / "root.json").write_text(json.dumps({"signed": {"_type": "targets"}}))
    assert "holds 'targets' metadata, not root" in selftest.check_keys(rt.paths).detail
    (rt.paths.metadata / "root.json").write_text(json.dumps({"signed": {"_type": "root"}}))
    rt.paths.credential.unlink()
    check = selftest.check_keys(rt.paths)
    assert not check.ok and "the credential" in check.detail


def test_keys_are_not_needed_before_enrolment(tmp_path):
    world = make_world(tmp_path)
    check = selftest.check_keys(world.paths)
    assert check.ok and "not enrolled" in check.detail


def test_the_daemon_probe_starts_the_daemon_on_a_copy_and_changes_nothing(tmp_path):
    rt = enrolled(tmp_path)
    fake, port = kernel(tmp_path)
    before = snapshot(rt.paths.root)
    check = selftest.check_daemon(rt.paths, kernel=port)
    assert check.ok, check.detail
    assert check.detail == "the daemon started and answered status on its control socket"
    assert snapshot(rt.paths.root) == before
    assert fake.finit_calls == [] and fake.delete_calls == []
    assert StateFile(rt.paths.state).load().enrolment is not None


def test_the_daemon_probe_passes_on_a_machine_whose_kernel_files_are_closed(tmp_path, monkeypatch):
    rt = enrolled(tmp_path)
    fake, port = kernel(tmp_path)
    deny(monkeypatch, fake.root / "sys/kernel/livepatch", fake.root / "proc/sys/kernel/version")
    check = selftest.check_daemon(rt.paths, kernel=port)
    assert check.ok, check.detail
    assert "(kernel files not readable here: Permission to access" in check.detail


def test_the_daemon_probe_fails_when_the_daemon_cannot_start(tmp_path):
    rt = enrolled(tmp_path)
    check = selftest.check_daemon(rt.paths, kernel=object(), timeout=5)
    assert not check.ok
    assert check.detail.startswith("the daemon did not start: AttributeError")


def fake_snap(tmp_path: Path, script: str | None) -> Path:
    snap = tmp_path / "snap"
    (snap / "bin").mkdir(parents=True)
    (snap / "bin" / "python3").symlink_to(sys.executable)
    program = snap / "bin" / "livepatch"
    if script is None:
        program.symlink_to(VENV_BIN / "livepatch")
    else:
        program.write_text(script)
        program.chmod(0o755)
    return snap


def test_the_cli_check_runs_the_real_entry_point(tmp_path):
    world = make_world(tmp_path)
    snap = fake_snap(tmp_path, None)
    environ = {**os.environ, "LIVEPATCH_STATE_DIR": str(world.paths.root)}
    check = selftest.check_cli(snap, environ)
    assert check.ok, check.detail


def test_a_cli_that_answers_with_a_livepatch_error_still_answers(tmp_path):
    script = (
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && {{ echo "livepatch {__version__}"; exit 0; }}\n'
        'echo "livepatch: Permission to access /proc/sys/kernel/version was denied." >&2\n'
        "exit 1\n"
    )
    check = selftest.check_cli(fake_snap(tmp_path, script), dict(os.environ))
    assert check.ok
    assert "answers with an error: livepatch: Permission" in check.detail


def test_a_crashing_cli_fails_the_check(tmp_path):
    script = (
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && {{ echo "livepatch {__version__}"; exit 0; }}\n'
        'echo "Traceback (most recent call last):" >&2\n'
        "echo \"ModuleNotFoundError: No module named 'requests'\" >&2\n"
        "exit 1\n"
    )
    check = selftest.check_cli(fake_snap(tmp_path, script), dict(os.environ))
    assert not check.ok
    assert "ModuleNotFoundError" in check.detail


def test_a_cli_of_another_version_fails_the_check(tmp_path):
    check = selftest.check_cli(fake_snap(tmp_path, "#!/bin/sh\necho livepatch 0.0.1\n"), {})
    assert not check.ok
    assert f"expected 'livepatch {__version__}'" in check.detail


def test_run_reports_every_check_even_after_a_failure(tmp_path):
    world = make_world(tmp_path)
    world.paths.state.write_text("{broken")
    checks = selftest.run(
        tmp_path / "no-snap",
        world.paths,
        {},
        daemon=lambda paths: selftest.Check("daemon", True, "stub"),
    )
    assert [c.name for c in checks] == ["imports", "cli", "config", "state", "keys", "daemon"]
    assert [c.name for c in checks if not c.ok] == ["cli", "state", "keys"]
