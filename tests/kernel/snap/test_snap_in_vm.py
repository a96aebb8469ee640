"""The packaged client on Debian's real kernel in qemu, in one boot.

The host builds the snap (`make snap`'s code, cached) and unpacks it; the VM
runs its apps and hooks from the unpacked tree against a patch service
started inside the VM: enable, refresh applies a signed patch live, status
says so, health is okay, a refresh may go ahead, the next revision's
post-refresh self-test passes on this kernel, and remove de-enrols while
the patch stays loaded. The guest side is tests/kernel/snap/guest.py; every
assertion message carries the guest's whole output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from livepatch.snap import build
from tests.kernel.conftest import SAMPLE_MODULES, GuestRun
from tests.snap.snapd import unsquash
from tests.vm import build_modules, default_release, python_in_vm
from tests.vm.modules import CACHE

REPO = Path(__file__).resolve().parents[3]
UNPACKED = Path.home() / ".cache" / "livepatch" / "snap"
V1_TEXT = "livepatch test v1: this kernel is live patched"
BOOT_TIMEOUT = 720.0
"""The guest starts the patch service and runs the packaged client under TCG: about
ten minutes here. The VM is killed at this limit with its output; pytest waits longer."""

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(BOOT_TIMEOUT + 180)]


def unpacked_snap() -> Path:
    """The .snap `make snap` builds, unpacked once per build where the VM can read it."""
    built = build.build(REPO, REPO / "build" / "snap")
    current = UNPACKED / built.digest[:16]
    root = current / "livepatch" / "x1"
    if not root.is_dir():
        for old in UNPACKED.glob("*"):  # earlier builds' trees
            if old != current:
                shutil.rmtree(old, ignore_errors=True)
        staging = root.with_name(".x1-staging")
        if staging.exists():
            shutil.rmtree(staging)
        unsquash(built.snap, staging).rename(root)
    return root


@pytest.fixture(scope="module")
def guest() -> GuestRun:
    plan = {
        "snap": str(unpacked_snap()),
        "modules": {name: str(path) for name, path in build_modules(SAMPLE_MODULES).items()},
    }
    text = json.dumps(plan, sort_keys=True)
    plan_file = CACHE / f"snap-plan-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    plan_file.write_text(text)
    return GuestRun(python_in_vm("tests.kernel.snap.guest", str(plan_file), timeout=BOOT_TIMEOUT))


@pytest.fixture(scope="module")
def facts(guest: GuestRun) -> dict[str, Any]:
    result: dict[str, Any] = guest.facts("snap")
    return result


def test_hooks_set_up_and_configure_the_packaged_client(facts, guest):
    assert facts["install"]["returncode"] == 0, guest.describe()
    assert facts["configure"]["returncode"] == 0, guest.describe()
    assert "applied ca-certs, check-interval, remote-server" in facts["configure"]["stderr"]


def test_enable_then_refresh_applies_the_patch_live(facts, guest):
    enable = facts["enable"]
    assert enable["returncode"] == 0, guest.describe()
    assert enable["stdout"].startswith("Machine enabled (machine id ")
    assert facts["patches_after_enable"] == []  # nothing was published yet
    refresh = facts["refresh"]
    assert refresh["returncode"] == 0, guest.describe()
    assert V1_TEXT not in facts["cmdline_before"]
    assert facts["cmdline_refreshed"] == V1_TEXT  # the running kernel changed behaviour
    assert facts["patches_refreshed"] == ["livepatch_cmdline_v1"]


def test_status_from_the_snap_shows_the_kernel_patched(facts, guest):
    doc = facts["status"]
    assert "Status" in doc, guest.describe()
    entry = doc["Status"][0]
    assert entry["Kernel"] == facts["kernel_key"] == default_release()
    assert entry["Livepatch"]["State"] == "applied", guest.describe()
    assert [fix["Name"] for fix in entry["Livepatch"]["Fixes"]] == ["cve-2024-1086"]
    assert all(fix["Patched"] for fix in entry["Livepatch"]["Fixes"])
    assert doc["Applied-Patches"] == [facts["patch_id"]]
    assert doc["Daemon-Running"] is True and doc["Errors"] == []
    assert facts["status_text"]["returncode"] == 0
    assert facts["reports"] == [1, 0]  # the service heard about it


def test_health_is_okay_and_a_refresh_may_go_ahead(facts, guest):
    assert facts["check_health"]["returncode"] == 0, guest.describe()
    assert facts["health"] == {"status": "okay", "message": "", "code": ""}
    assert facts["pre_refresh"]["returncode"] == 0, guest.describe()
    assert "may go ahead" in facts["pre_refresh"]["stderr"]


def test_the_next_revision_passes_its_self_test_on_this_kernel(facts, guest):
    post = facts["post_refresh"]
    assert post["returncode"] == 0, guest.describe()
    assert "self-test keys: ok (pinned root metadata and machine credential read)" in post["stderr"]
    daemon_line = next(line for line in post["stderr"].splitlines() if "self-test daemon" in line)
    assert "answered status" in daemon_line and "not readable" not in daemon_line
    assert facts["daemon_exit"] == 0, facts["daemon_log"]


def test_remove_de_enrols_and_the_patch_stays_until_reboot(facts, guest):
    remove = facts["remove"]
    assert remove["returncode"] == 0, guest.describe()
    assert "livepatch remove: De-enrolled machine " in remove["stderr"]
    assert (
        "Loaded livepatch modules stay in the kernel until the next reboot: "
        "livepatch_cmdline_v1." in remove["stderr"]
    )
    assert facts["cmdline_removed"] == V1_TEXT
    assert facts["patches_removed"] == ["livepatch_cmdline_v1"]
    journal = facts["journal"]
    for hook in ("install", "configure", "check-health", "pre-refresh"):
        assert f"revision=x1 {hook} ok" in journal
    assert "revision=x2 post-refresh ok" in journal and "revision=x2 remove ok" in journal
