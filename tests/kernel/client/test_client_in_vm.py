"""The whole client on Debian's real kernel in qemu, in one boot: `livepatch daemon`
and the `livepatch` command in the VM, the patch service (SQLite, HTTPS with a
private CA) on the host; `livepatch enable TOKEN` applies a patch signed by the
service's key live, `status --format json` says so, and a halted patch is never
applied (until it is resumed).

Why the service runs on the host: see tests/kernel/client/vm.py. The guest side
is tests/kernel/client/guest.py; every assertion message carries its output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.client.service import QEMU_HOST, PatchService
from tests.kernel.client.vm import python_in_networked_vm
from tests.kernel.conftest import SAMPLE_MODULES, GuestRun
from tests.vm import build_modules, default_release

pytestmark = pytest.mark.kernel

V1, V2 = "livepatch_cmdline_v1", "livepatch_cmdline_v2"
V1_TEXT = "livepatch test v1: this kernel is live patched"
V2_TEXT = "livepatch test v2: this kernel is live patched"
BOOT_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatchService]:
    service = PatchService(tmp_path_factory.mktemp("client-vm") / "service")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def published(service: PatchService) -> dict[str, str]:
    modules = build_modules(SAMPLE_MODULES)
    key = default_release()
    v1 = service.publish(key, V1, ("CVE-2024-1086",), module=modules[V1])
    v2 = service.publish(key, V2, ("CVE-2024-1086", "CVE-2023-3390"), module=modules[V2])
    service.admin("patches", "halt", v2, "--reason", "a canary failed")
    return {"v1": v1, "v2": v2}


@pytest.fixture(scope="module")
def guest(
    service: PatchService, published: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> GuestRun:
    exchange = tmp_path_factory.mktemp("exchange")
    (exchange / "input.json").write_text(
        json.dumps(
            {
                "url": f"https://{QEMU_HOST}:{service.port}",
                "ca": str(service.ca),
                "token": service.token(),
                "patches": published,
            }
        )
    )
    with ThreadPoolExecutor(1) as pool:
        boot = pool.submit(
            python_in_networked_vm,
            "tests.kernel.client.guest",
            str(exchange),
            rwdirs=[exchange],
            timeout=BOOT_TIMEOUT,
        )
        while not boot.done() and not (exchange / "halted-checked").exists():
            time.sleep(0.2)
        if not boot.done():
            service.admin("patches", "resume", published["v2"])
            (exchange / "resumed").write_text("1")
        run = GuestRun(boot.result())
    print(f"VM run {run.result.duration:.0f} s; guest steps (s since start): {_timings(run)}")
    return run


def _timings(run: GuestRun) -> Any:
    entry = run.scenarios.get("client") or {}
    return (entry.get("facts") or {}).get("timings")


@pytest.fixture(scope="module")
def facts(guest: GuestRun) -> dict[str, Any]:
    result: dict[str, Any] = guest.facts("client")
    return result


def fixes(doc: dict[str, Any]) -> dict[str, bool]:
    return {fix["Name"]: fix["Patched"] for fix in doc["Status"][0]["Livepatch"]["Fixes"]}


def test_enable_applies_the_patch_live(facts: dict[str, Any], guest: GuestRun) -> None:
    enable = facts["enable"]
    assert enable["returncode"] == 0, guest.describe()
    assert enable["stdout"].startswith("Machine enabled (machine id ")
    assert "patch state: ✓ all applicable livepatch modules applied" in enable["stdout"]
    assert V1_TEXT not in facts["cmdline_before"]
    assert facts["cmdline_enabled"] == V1_TEXT  # the running kernel changed behaviour
    assert facts["patches_enabled"] == ["livepatch_cmdline_v1"]


def test_status_json_lists_the_cve_as_patched(
    facts: dict[str, Any], guest: GuestRun, published: dict[str, str]
) -> None:
    doc = facts["status_enabled"]
    entry = doc["Status"][0]
    assert entry["Kernel"] == facts["kernel_key"] == default_release()
    assert entry["Running"] is True and entry["Supported"] == "supported"
    assert entry["Livepatch"]["State"] == "applied", guest.describe()
    assert entry["Livepatch"]["CheckState"] == "checked"
    assert entry["Livepatch"]["Version"] == "1"
    assert fixes(doc) == {"cve-2024-1086": True}
    assert doc["Applied-Patches"] == [published["v1"]]
    assert doc["Daemon-Running"] is True and doc["Enrolled"] is True
    assert doc["Errors"] == []
    assert "is fully patched — 1 fix" in facts["motd_enabled"]


def test_a_halted_patch_is_never_applied(facts: dict[str, Any], guest: GuestRun) -> None:
    # v2 is newer and admits every machine, but it was halted when enable checked in
    assert facts["cmdline_enabled"] == V1_TEXT, guest.describe()
    assert facts["v2_module_while_halted"] is False
    assert facts["v2_in_kernel_log_while_halted"] == []


def test_resumed_cumulative_patch_replaces_the_first(
    facts: dict[str, Any], guest: GuestRun, published: dict[str, str], service: PatchService
) -> None:
    assert facts["refresh_resumed"]["returncode"] == 0, guest.describe()
    assert facts["cmdline_resumed"] == V2_TEXT
    assert facts["patches_resumed"] == [V2]  # atomic replace unloaded v1
    doc = facts["status_resumed"]
    assert doc["Status"][0]["Livepatch"]["Version"] == "2"
    assert fixes(doc) == {"cve-2024-1086": True, "cve-2023-3390": True}
    assert doc["Applied-Patches"] == [published["v2"]]
    # the machine reported each apply: (applied, failed)
    assert service.reports(published["v1"]) == (1, 0)
    assert service.reports(published["v2"]) == (1, 0)


def test_the_daemon_stops_cleanly(facts: dict[str, Any], guest: GuestRun) -> None:
    assert facts["daemon_exit"] == 0, facts["daemon_log"]
    assert "Traceback" not in facts["daemon_log"]
