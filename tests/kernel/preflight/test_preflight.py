"""`livepatch-admin preflight` on Debian's real kernel in qemu: one boot per module.

A good cumulative patch passes (loaded, transition time, healthy, unloaded);
a patch of a function the kernel lacks fails to load, naming the symbol; a
patch whose replacement warns when /proc/cmdline is read loads cleanly but is
judged unhealthy, with the WARNING and the new W taint as evidence. Modules
are unsigned when given: pre-flight signs them with the service's key, as
publish does, and the guest verifies that signature as the client would.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from livepatch.server import admin
from tests.kernel.conftest import SAMPLE_MODULES
from tests.vm import build_modules, default_release

BOOT_TIMEOUT = 600.0
"""livepatch.preflight.vm's own limit for one pre-flight boot."""
PREFLIGHT_MODULES = Path(__file__).parents[1] / "modules" / "preflight"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("preflight") / "data"


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return {**build_modules(SAMPLE_MODULES), **build_modules(PREFLIGHT_MODULES)}


def preflight(data_dir: Path, module: Path, *extra: str) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["preflight", str(module), "--kernel", default_release(), "--data-dir", str(data_dir)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = admin.main([*argv, *extra])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def good(data_dir: Path, modules: dict[str, Path]) -> tuple[int, Any, str]:
    code, out, err = preflight(data_dir, modules["livepatch_cmdline_v1"], "--format", "json")
    return code, json.loads(out) if out else None, err


@pytest.fixture(scope="module")
def missing(data_dir: Path, modules: dict[str, Path]) -> tuple[int, Any, str]:
    code, out, err = preflight(data_dir, modules["livepatch_missing_symbol"], "--format", "json")
    return code, json.loads(out) if out else None, err


def test_a_good_patch_passes(good) -> None:
    code, result, err = good
    assert code == 0, (result, err)
    assert result["passed"] is True
    assert (result["load"], result["health"], result["unloaded"]) == ("passed", "healthy", True)
    assert result["kernel"] == default_release()
    assert result["module"] == "livepatch_cmdline_v1"
    assert isinstance(result["transition_ms"], int) and result["transition_ms"] >= 0
    assert result["evidence"] == "" and result["reason"] == ""
    assert any("livepatch_cmdline_v1" in line for line in result["log"]), result["log"]


def test_a_patch_of_a_missing_symbol_fails_to_load_naming_it(missing) -> None:
    code, result, err = missing
    assert code == 1, (result, err)
    assert result["passed"] is False and result["load"] == "failed"
    assert result["health"] is None and result["unloaded"] is False
    assert result["reason"], result
    log = "\n".join(result["log"])
    assert "livepatch_test_function_this_kernel_lacks" in log, result


def test_a_misbehaving_replacement_is_unhealthy_with_evidence(data_dir, modules) -> None:
    code, out, err = preflight(data_dir, modules["livepatch_cmdline_warn"])
    assert code == 1, (out, err)
    lines = out.splitlines()
    assert "pre-flight: FAILED" in lines
    assert "load: passed" in lines and "health: unhealthy" in lines
    assert "unloaded: yes" in lines
    evidence = next(line for line in lines if line.startswith("evidence: "))
    assert "WARNING:" in evidence and "livepatch_cmdline_warn" in evidence, out
    assert evidence.endswith("new taint W"), out
    assert any(line.startswith("transition: ") and line.endswith(" ms") for line in lines)


def test_an_unknown_kernel_is_a_clear_error(data_dir, modules) -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["preflight", str(modules["livepatch_cmdline_v1"]), "--kernel", "6.1.0-9999-amd64"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = admin.main([*argv, "--data-dir", str(data_dir)])
    assert code != 0
    message = err.getvalue().strip()
    assert message.startswith(
        "livepatch-admin: No kernel package linux-image-6.1.0-9999-amd64 could be fetched"
    ), message
    assert "Traceback" not in message


pytestmark = [pytest.mark.kernel, pytest.mark.timeout(BOOT_TIMEOUT + 300)]


def admin_run(data_dir: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = admin.main([*argv, "--data-dir", str(data_dir)])
    return code, out.getvalue(), err.getvalue()


def publish_args(module: Path, *extra: str) -> list[str]:
    return [
        "publish",
        str(module),
        "--kernel",
        default_release(),
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "high",
        "--description",
        "pre-flight test",
        *extra,
    ]


def test_publish_refuses_a_module_that_fails_preflight_and_publishes_nothing(
    data_dir, modules
) -> None:
    code, out, err = admin_run(data_dir, *publish_args(modules["livepatch_cmdline_warn"]))
    assert code != 0, out
    assert err.startswith(
        "livepatch-admin: Pre-flight refused the module: it turned unhealthy on "
        f"{default_release()}: WARNING:"
    ), err
    assert err.rstrip().endswith(
        "fix the module, or publish with --no-preflight to skip the check."
    )
    listed = json.loads(admin_run(data_dir, "patches", "list", "--format", "json")[1])
    assert [p["module_name"] for p in listed] == []


def test_publish_signs_the_preflight_record_and_list_shows_it(data_dir, modules) -> None:
    code, _, err = admin_run(
        data_dir, *publish_args(modules["livepatch_cmdline_v1"], "--format", "json")
    )
    assert code == 0, err
    code, _, err = admin_run(
        data_dir, *publish_args(modules["livepatch_cmdline_v2"], "--no-preflight")
    )
    assert code == 0, err
    listed = {
        p["module_name"]: p["preflight"]
        for p in json.loads(admin_run(data_dir, "patches", "list", "--format", "json")[1])
    }
    assert listed["livepatch_cmdline_v1"]["result"] == "passed"
    assert listed["livepatch_cmdline_v1"]["kernel"] == default_release()
    assert listed["livepatch_cmdline_v2"]["result"] == "skipped"
    table = admin_run(data_dir, "patches", "list")[1].splitlines()
    assert "PREFLIGHT" in table[0]
    assert any("passed" in row for row in table[1:]) and any("skipped" in row for row in table[1:])
