"""Two Debian kernels (the installed ABI and the previous one, fetched and cached),
one VM boot each, one patch service: each machine receives only the patch built
for its own kernel key, says `Supported: supported`, and refuses the other
kernel's module with a clear error before any load is tried (vermagic).

The guest side is tests/kernel/client/kernels_guest.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.client.service import QEMU_HOST, PatchService
from tests.kernel.client.vm import python_in_networked_vm
from tests.kernel.conftest import SAMPLE_MODULES, GuestRun
from tests.vm import build_modules, default_release
from tests.vm.kernels import second_kernel, second_release

MODULE = "livepatch_cmdline_v1"
V1_TEXT = "livepatch test v1: this kernel is live patched"
BOOT_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatchService]:
    service = PatchService(tmp_path_factory.mktemp("kernels-vm") / "service")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def kernels() -> dict[str, Path]:
    """Kernel key → image: the installed kernel and the previous ABI."""
    return {
        default_release(): Path(f"/boot/vmlinuz-{default_release()}"),
        **{second_release(): second_kernel().image},
    }


@pytest.fixture(scope="module")
def modules(kernels: dict[str, Path]) -> dict[str, Path]:
    return {key: build_modules(SAMPLE_MODULES, release=key)[MODULE] for key in kernels}


@pytest.fixture(scope="module")
def published(service: PatchService, modules: dict[str, Path]) -> dict[str, str]:
    return {key: service.publish(key, MODULE, module=module) for key, module in modules.items()}


@pytest.fixture(scope="module")
def runs(
    service: PatchService,
    kernels: dict[str, Path],
    modules: dict[str, Path],
    published: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    token = service.token()
    facts: dict[str, dict[str, Any]] = {}
    for key, image in kernels.items():
        exchange = tmp_path_factory.mktemp(f"exchange-{key}")
        other = next(k for k in kernels if k != key)
        (exchange / "input.json").write_text(
            json.dumps(
                {
                    "url": f"https://{QEMU_HOST}:{service.port}",
                    "ca": str(service.ca),
                    "token": token,
                    "foreign": str(modules[other]),
                }
            )
        )
        run = GuestRun(
            python_in_networked_vm(
                "tests.kernel.client.kernels_guest",
                str(exchange),
                key,
                rwdirs=[exchange],
                timeout=BOOT_TIMEOUT,
                kernel=image,
            )
        )
        facts[key] = run.facts(key)
    return facts


def test_two_different_kernels_booted(runs: dict[str, dict[str, Any]]) -> None:
    assert sorted(facts["kernel_key"] for facts in runs.values()) == sorted(runs)
    assert len(runs) == 2


def test_each_machine_gets_only_its_own_kernels_patch(
    runs: dict[str, dict[str, Any]], published: dict[str, str]
) -> None:
    for key, facts in runs.items():
        assert facts["enable"]["returncode"] == 0, facts["enable"]
        assert facts["cmdline_enabled"] == V1_TEXT
        assert facts["patches_enabled"] == [MODULE]
        status = facts["status"]
        assert status["Status"][0]["Kernel"] == key
        assert status["Status"][0]["Supported"] == "supported"
        assert status["Applied-Patches"] == [published[key]]
        assert status["Errors"] == []


def test_the_other_kernels_module_is_refused_before_any_load(
    runs: dict[str, dict[str, Any]],
) -> None:
    for key, facts in runs.items():
        other = next(k for k in runs if k != key)
        assert facts["foreign_refused"] == {
            "code": "wrong-kernel",
            "message": f"Module {MODULE} was built for kernel {other}, not for the running "
            f"kernel {key}, so it was not loaded; use the patch made for {key}.",
        }
        assert facts["kernel_log_grew"] is False


pytestmark = [pytest.mark.kernel, pytest.mark.timeout(2 * BOOT_TIMEOUT + 300)]
