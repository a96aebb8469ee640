"""Fleet safety on Debian's real kernel in qemu: revocation and a crash, two boots.

Boot 1 (kernel command line + oops=panic): the daemon applies cumulative v1, then
cumulative v2 (/proc/cmdline shows each), judges v2 healthy after its
window; `patches revoke v2` takes the machine back to v1 by atomic replace
(reported `reverted`), `patches revoke v1` leaves no patch (the original
/proc/cmdline is back). Then a faulty patch, published to the canary stage
with the machine in it, loads cleanly; reading /proc/cmdline hits its BUG(),
oops=panic takes the machine down (virtme-ng's panic=-1 and -no-reboot end
the VM, as a reset would).
Boot 2, on the same state directory (an ext4 disk image attached to both
boots, so only what the client flushed survives the crash): the daemon
finds the apply intent of the first boot, reports `crashed`, never loads the
faulty patch again, `status` says so in one sentence, and the service's
rollout engine halts the faulty patch on that report.

The guest side is tests/kernel/client/safety_guest.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.client.service import QEMU_HOST, PatchService
from tests.kernel.client.vm import python_in_networked_vm
from tests.kernel.conftest import SAMPLE_MODULES, GuestRun
from tests.vm import build_modules, default_release

V1, V2, BUG = "livepatch_cmdline_one", "livepatch_cmdline_v2", "livepatch_cmdline_bug"
V1_TEXT = "livepatch test one: cumulative patch 1 is applied"
V2_TEXT = "livepatch test v2: this kernel is live patched"
SAFETY_MODULES = Path(__file__).parents[1] / "modules" / "safety"
BOOT_TIMEOUT = 900.0
GUEST_WAIT = 300.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatchService]:
    service = PatchService(tmp_path_factory.mktemp("safety-vm") / "service")
    # one machine is the whole canary stage here: its crash alone must be able to halt
    (service.data / "config.toml").write_text("[rollout]\nminimum_sample = 1\n")
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return {**build_modules(SAMPLE_MODULES), **build_modules(SAFETY_MODULES)}


class Host:
    """The host's turns, answering the guest's EXCHANGE/guest-STEP files."""

    def __init__(self, service: PatchService, modules: dict[str, Path], exchange: Path) -> None:
        self.service, self.modules, self.exchange = service, modules, exchange
        self.ids: dict[str, str] = {}

    def wait_for(self, step: str, boot: Any) -> bool:
        deadline = time.monotonic() + GUEST_WAIT
        while not (self.exchange / f"guest-{step}").exists():
            if boot.done() or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def answer(self, step: str) -> None:
        (self.exchange / f"host-{step}").write_text("1")

    def drive(self, boot: Any) -> None:
        key = default_release()
        if not self.wait_for("enabled", boot):
            return
        self.ids["v2"] = self.service.publish(
            key, V2, ("CVE-2024-1086", "CVE-2023-3390"), module=self.modules[V2]
        )
        self.answer("enabled")
        if not self.wait_for("v2", boot):
            return
        self.service.admin("patches", "revoke", self.ids["v2"], "--reason", "oops in v2")
        self.answer("v2")
        if not self.wait_for("v2_revoked", boot):
            return
        self.service.admin("patches", "revoke", self.ids["v1"], "--reason", "v1 is bad too")
        self.answer("v2_revoked")
        if not self.wait_for("v1_revoked", boot):
            return
        published = self.service.admin_json(
            "publish",
            str(self.modules[BUG]),
            "--kernel",
            key,
            "--cve",
            "CVE-2024-1086",
            "--severity",
            "high",
            "--description",
            "a fix that crashes on use",
            "--canary-percentage",
            "100",
            "--moderate-percentage",
            "100",
            "--no-preflight",  # it would fail there: tests/kernel/preflight shows that
        )
        self.ids["bug"] = str(published["patch_id"])
        self.answer("v1_revoked")


@pytest.fixture(scope="module")
def boots(
    service: PatchService, modules: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[GuestRun, GuestRun, Host]:
    exchange = tmp_path_factory.mktemp("safety-exchange")
    disk = tmp_path_factory.mktemp("safety-disk") / "state.ext4"
    subprocess.run(["truncate", "-s", "64M", str(disk)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    host = Host(service, modules, exchange)
    host.ids["v1"] = service.publish(default_release(), V1, module=modules[V1])
    (exchange / "input.json").write_text(
        json.dumps(
            {
                "url": f"https://{QEMU_HOST}:{service.port}",
                "ca": str(service.ca),
                "token": service.token(),
            }
        )
    )
    with ThreadPoolExecutor(1) as pool:
        boot = pool.submit(
            python_in_networked_vm,
            "tests.kernel.client.safety_guest",
            "first",
            str(exchange),
            rwdirs=[exchange],
            timeout=BOOT_TIMEOUT,
            append=["oops=panic"],
            disks=[disk],
        )
        host.drive(boot)
        first = GuestRun(boot.result())
    second = GuestRun(
        python_in_networked_vm(
            "tests.kernel.client.safety_guest",
            "second",
            str(exchange),
            rwdirs=[exchange],
            timeout=BOOT_TIMEOUT,
            disks=[disk],
        )
    )
    print(f"VM runs {first.result.duration:.0f} s and {second.result.duration:.0f} s")
    return first, second, host


@pytest.fixture(scope="module")
def first(boots: tuple[GuestRun, GuestRun, Host]) -> dict[str, Any]:
    facts: dict[str, Any] = boots[0].facts("first")
    return facts


@pytest.fixture(scope="module")
def second(boots: tuple[GuestRun, GuestRun, Host]) -> dict[str, Any]:
    facts: dict[str, Any] = boots[1].facts("second")
    return facts


def livepatch(doc: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = doc["Status"][0]["Livepatch"]
    return entry


def test_cumulative_v2_applies_and_is_judged_healthy(first, boots) -> None:
    host = boots[2]
    assert first["enable"]["returncode"] == 0, boots[0].describe()
    assert first["cmdline_enabled"] == V1_TEXT
    assert first["refresh_v2"]["returncode"] == 0, first["refresh_v2"]
    assert first["cmdline_v2"] == V2_TEXT and first["patches_v2"] == [V2]
    # judged by the daemon when the 3 s window ends, maybe before this status ran
    assert first["status_v2"]["Health"]["Patch"] == host.ids["v2"]
    assert first["status_v2"]["Health"]["Verdict"] in ("watching", "healthy")
    health = first["status_v2_judged"]["Health"]
    assert health == {"Patch": host.ids["v2"], "Verdict": "healthy", "Evidence": "", "Until": None}


def test_revoking_v2_goes_back_to_v1_by_atomic_replace(first, boots) -> None:
    host = boots[2]
    assert first["refresh_v2_revoked"]["returncode"] == 0, first["refresh_v2_revoked"]
    assert first["cmdline_v2_revoked"] == V1_TEXT  # the older patch's behaviour is back
    assert first["patches_v2_revoked"] == [V1]
    doc = first["status_v2_revoked"]
    assert doc["Applied-Patches"] == [host.ids["v1"]]
    assert livepatch(doc)["Version"] == "1"
    assert doc["Revoked"] == {
        "Patch": host.ids["v2"],
        "Reason": "oops in v2",
        "Replaced-By": host.ids["v1"],
        "Message": f"Patch {host.ids['v2']} was revoked by the service (oops in v2); "
        f"this machine went back to patch {host.ids['v1']}.",
    }


def test_revoking_v1_too_leaves_no_patch_and_the_original_behaviour(first, boots) -> None:
    host = boots[2]
    assert first["refresh_v1_revoked"]["returncode"] == 0, first["refresh_v1_revoked"]
    assert first["cmdline_v1_revoked"] == first["cmdline_before"]
    assert V1_TEXT not in first["cmdline_before"]
    assert first["patches_v1_revoked"] == []
    doc = first["status_v1_revoked"]
    assert doc["Applied-Patches"] == [] and livepatch(doc)["State"] == "nothing-to-apply"
    assert doc["Revoked"]["Patch"] == host.ids["v1"]
    assert doc["Revoked"]["Replaced-By"] is None
    assert (
        f"revoked: ✗ Patch {host.ids['v1']} was revoked by the service (v1 is bad too); "
        "this machine removed it from the kernel." in first["verbose_v1_revoked"]["stdout"]
    )


def test_each_step_reached_the_service(first, boots) -> None:
    service, ids = boots[2].service, boots[2].ids
    assert stored(service, ids["v2"]) == [("reverted", None)]  # replaced applied+healthy
    assert stored(service, ids["v1"]) == [("reverted", None)]


def test_the_faulty_patch_loaded_cleanly_then_crashed_the_machine(first, second, boots) -> None:
    assert first["refresh_bug"]["returncode"] == 0, first["refresh_bug"]
    assert first["patches_bug"] == [BUG]
    assert first["intent_bug"]["patch_id"] == boots[2].ids["bug"]
    assert first["intent_bug"]["boot_id"] == first["boot_id"]
    assert "survived" not in first, "reading /proc/cmdline did not crash the kernel"
    # virtme-ng's exit status when the guest did not finish its command: the panic
    assert boots[0].result.returncode == 255, boots[0].describe()
    assert second["boot_id"] != first["boot_id"]


def test_after_the_crash_the_patch_is_reported_and_never_loaded_again(second, boots) -> None:
    bug = boots[2].ids["bug"]
    assert second["refresh_after_crash"]["returncode"] == 0, second["refresh_after_crash"]
    assert second["intent_after_start"] is False
    assert second["patches_after_crash"] == []
    assert second["bug_module_loaded"] is False
    assert second["bug_in_kernel_log"] == []
    assert second["cmdline_after_crash"] == boots[1].facts("second")["cmdline_after_crash"]
    assert V1_TEXT not in second["cmdline_after_crash"]
    message = (
        f"The machine crashed or was reset while patch {bug} was being applied; it will not "
        "be loaded again until an administrator runs `livepatch clear-crash`."
    )
    assert second["status_after_crash"]["Crash"]["Message"] == message
    assert f"crash: ✗ {message}" in second["human_after_crash"]["stdout"]
    assert second["daemon_exit"] == 0, second["daemon_log"]


def test_the_service_counts_the_crash_and_its_engine_halts_the_patch(second, boots) -> None:
    service, bug = boots[2].service, boots[2].ids["bug"]
    assert stored(service, bug) == [("crashed", None)]
    shown = service.admin_json("patches", "show", bug)
    assert [(r["applied"], r["failed"]) for r in shown["reports"]] == [(0, 1)], shown
    service.admin("patches", "run-engine")
    shown = service.admin_json("patches", "show", bug)
    assert shown["rollout"]["halted"] is True, shown


def stored(service: PatchService, patch_id: str) -> list[tuple[str, str | None]]:
    """The (result, health) outcomes the service keeps for `patch_id`, from its database."""
    from sqlalchemy import select

    from livepatch.server.config import load_config
    from livepatch.server.service import Service
    from livepatch.server.storage.models import Report

    opened = Service(load_config(service.data, None))
    try:
        with opened.transaction(readonly=True) as session:
            rows = session.execute(
                select(Report.result, Report.health).where(Report.patch_id == patch_id)
            )
            return sorted((str(result), health) for result, health in rows)
    finally:
        opened.close()


pytestmark = [pytest.mark.kernel, pytest.mark.timeout(2 * BOOT_TIMEOUT + 300)]
