from __future__ import annotations

from pathlib import Path

import pytest

from livepatch.preflight.kernels import (
    KernelUnavailable,
    cached,
    installed,
    kernel_image,
    package_name,
)
from livepatch.preflight.result import PreflightResult, failure_reason, render

KEY = "6.1.0-56-amd64"


def passed(**changes: object) -> PreflightResult:
    fields: dict[str, object] = {
        "kernel": KEY,
        "module": "lp_fix",
        "load": "passed",
        "transition_ms": 1042,
        "health": "healthy",
        "unloaded": True,
        "log": ["livepatch: enabling patch 'lp_fix'", "livepatch: 'lp_fix': patching complete"],
    }
    fields.update(changes)
    return PreflightResult(**fields)  # type: ignore[arg-type]


def test_only_load_health_and_unload_together_pass() -> None:
    assert passed().passed
    assert not passed(health="unhealthy").passed
    assert not passed(unloaded=False).passed
    assert not PreflightResult(KEY, "lp_fix", "failed", reason="no").passed


def test_json_round_trip_keeps_every_field() -> None:
    result = passed(evidence="new taint W")
    data = result.to_json()
    assert data["passed"] is True
    assert PreflightResult.from_json(data) == result


def test_text_is_key_value_lines_then_the_log() -> None:
    assert render(passed()) == (
        "pre-flight: passed\n"
        f"kernel: {KEY}\n"
        "module: lp_fix\n"
        "load: passed\n"
        "transition: 1042 ms\n"
        "health: healthy\n"
        "unloaded: yes\n"
        "kernel log:\n"
        "  livepatch: enabling patch 'lp_fix'\n"
        "  livepatch: 'lp_fix': patching complete\n"
    )


def test_failure_reasons_name_the_step() -> None:
    refused = PreflightResult(KEY, "lp_fix", "failed", reason="symbol x not found")
    assert failure_reason(refused) == f"it did not load on {KEY}: symbol x not found"
    told = PreflightResult(
        KEY,
        "lp_fix",
        "failed",
        reason="EINVAL.",
        log=[
            "lp_fix: tainting kernel with TAINT_LIVEPATCH",
            "livepatch: symbol 'f' not found in symbol table",
            "lp_fix: done",
        ],
    )
    assert failure_reason(told) == (
        f"it did not load on {KEY}: EINVAL; "
        "the kernel logged \"livepatch: symbol 'f' not found in symbol table\""
    )
    sick = passed(health="unhealthy", evidence="new taint W")
    assert failure_reason(sick) == f"it turned unhealthy on {KEY}: new taint W"


def tree(root: Path, key: str) -> Path:
    (root / "boot").mkdir(parents=True)
    (root / f"boot/vmlinuz-{key}").write_bytes(b"image")
    (root / f"lib/modules/{key}").mkdir(parents=True)
    return root


def test_an_installed_or_cached_kernel_is_found(tmp_path: Path) -> None:
    assert installed(KEY, tmp_path) is None
    tree(tmp_path / "root", KEY)
    found = installed(KEY, tmp_path / "root")
    assert found is not None and found.image == tmp_path / f"root/boot/vmlinuz-{KEY}"
    tree(tmp_path / "cache" / "6.1.0-47-cloud-amd64", "6.1.0-47-cloud-amd64")
    image = kernel_image("6.1.0-47-cloud-amd64", cache=tmp_path / "cache", fetch=False)
    assert image == cached("6.1.0-47-cloud-amd64", tmp_path / "cache")


def test_a_kernel_neither_installed_nor_cached_is_a_clear_error_without_fetch(
    tmp_path: Path,
) -> None:
    with pytest.raises(KernelUnavailable) as caught:
        kernel_image("6.1.0-9998-amd64", cache=tmp_path, fetch=False)
    assert str(caught.value) == (
        "Kernel 6.1.0-9998-amd64 is not installed or cached; fetch linux-image-6.1.0-9998-amd64."
    )


@pytest.mark.parametrize("key", ["", "../../etc", "6.1.0 56", "-rf"])
def test_keys_that_could_not_name_a_package_are_refused(key: str) -> None:
    with pytest.raises(KernelUnavailable, match="is not a kernel key"):
        package_name(key)
