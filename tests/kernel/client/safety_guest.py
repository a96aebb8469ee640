"""Inside the VM, for the fleet-safety suite: revocation, then a crash, on the real kernel.

Usage (in the guest, as root): python -m tests.kernel.client.safety_guest PHASE EXCHANGE

The client's state directory is on a real disk (an ext4 image the host
attaches to both boots, mounted at DISK), so it outlives the first boot's
crash as a machine's disk does: only what was flushed survives, the journal
is replayed at the next mount. The two sides take turns:
the guest writes EXCHANGE/guest-STEP when it has done STEP and waits for the
host's EXCHANGE/host-STEP (see tests/kernel/client/test_fleet_safety_in_vm.py).

first: enable (v1 applied), refresh onto cumulative v2, wait out the health
window, refresh after v2 is revoked (back on v1), after v1 is revoked (no
patch), then apply the faulty patch, print the facts and read /proc/cmdline:
its replacement hits BUG(), oops=panic takes the machine down.
second: start the daemon on the same state (an intent from the first boot is
found), refresh, and print the facts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.kernel.client.guest import BIN, Guest, cmdline, loaded_patches
from tests.kernel.guest.kmsg import dmesg_lines
from tests.vm.report import emit

BUG = "livepatch_cmdline_bug"
DISK = Path("/tmp/livepatch-disk")
HOST_WAIT = 120.0
HEALTH_WINDOW = 3


def mount_disk() -> None:
    """Mount the host's ext4 image (virtme-ng attaches it as /dev/vda) at DISK."""
    subprocess.run(["modprobe", "-a", "ext4"], check=False)
    deadline = time.monotonic() + 30
    while not (disks := sorted(Path("/sys/block").glob("vd*"))):
        assert time.monotonic() < deadline, "no disk appeared"
        time.sleep(0.2)
    device = Path("/dev") / disks[0].name
    if not device.exists():
        major, minor = (disks[0] / "dev").read_text().split(":")
        subprocess.run(["mknod", str(device), "b", major, minor.strip()], check=True)
    DISK.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "ext4", str(device), str(DISK)], check=True)


class SafetyGuest(Guest):
    def __init__(self, exchange: Path) -> None:
        super().__init__(exchange)
        mount_disk()
        self.state_dir = DISK / "client"
        self.env["LIVEPATCH_STATE_DIR"] = str(self.state_dir)
        self.facts: dict[str, Any] = {}
        self.daemon: subprocess.Popen[bytes] | None = None
        self.log = self.work / "daemon.log"

    def turn(self, step: str) -> None:
        """Say `step` is done and wait for the host's answer to it."""
        (self.exchange / f"guest-{step}").write_text("1")
        deadline = time.monotonic() + HOST_WAIT
        while not (self.exchange / f"host-{step}").exists():
            assert time.monotonic() < deadline, f"the host did not answer {step}"
            time.sleep(0.2)

    def start_daemon(self) -> None:
        control = self.state_dir / "control.sock"
        # a socket left on the disk by the crashed boot is not a running daemon
        control.unlink(missing_ok=True)
        with self.log.open("w") as stream:
            self.daemon = subprocess.Popen(
                [str(BIN / "livepatch"), "daemon"],
                env=self.env,
                stdout=stream,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while not control.exists():
            assert self.daemon.poll() is None, f"the daemon exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        self.mark("daemon up")

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.send_signal(signal.SIGTERM)
            self.facts["daemon_exit"] = self.daemon.wait(timeout=60)
            self.facts["daemon_log"] = self.log.read_text()[-6000:]

    def snapshot(self, name: str, *, read_cmdline: bool = True) -> None:
        if read_cmdline:
            self.facts[f"cmdline_{name}"] = cmdline()
        self.facts[f"patches_{name}"] = loaded_patches()
        self.facts[f"status_{name}"] = self.status()
        self.mark(name)

    def refresh(self, name: str) -> None:
        self.facts[f"refresh_{name}"] = self.livepatch("refresh")
        self.snapshot(name)

    def first(self) -> None:
        facts = self.facts
        facts["cmdline_before"] = cmdline()
        self.wait_for_network()
        facts["config"] = self.livepatch(
            "config",
            f"remote-server={self.input['url']}",
            f"ca-certs={self.input['ca']}",
            f"health-window={HEALTH_WINDOW}",
        )
        self.start_daemon()
        facts["enable"] = self.livepatch("enable", self.input["token"])
        self.snapshot("enabled")
        self.turn("enabled")  # the host publishes v2

        self.refresh("v2")
        time.sleep(HEALTH_WINDOW + 1)
        self.refresh("v2_judged")  # judges v2 and sends the verdict
        self.turn("v2")  # the host revokes v2

        self.refresh("v2_revoked")
        self.turn("v2_revoked")  # the host revokes v1

        self.refresh("v1_revoked")
        self.facts["verbose_v1_revoked"] = self.livepatch("status", "--verbose")
        # a long window: the faulty patch is still young when it crashes the machine
        facts["config_long_window"] = self.livepatch("config", "health-window=3600")
        self.turn("v1_revoked")  # the host publishes the faulty patch

        facts["refresh_bug"] = self.livepatch("refresh")
        facts["patches_bug"] = loaded_patches()
        facts["intent_bug"] = json.loads((self.state_dir / "apply-intent.json").read_text())
        facts["boot_id"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        self.mark("faulty patch applied")
        facts["timings"] = self.timings
        emit({"first": {"ok": True, "facts": facts}})
        time.sleep(1)  # let the console carry the results out
        Path("/proc/cmdline").read_text()  # BUG() in the replacement: the machine goes down
        facts["survived"] = True

    def second(self) -> None:
        facts = self.facts
        facts["boot_id"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        self.wait_for_network()
        self.start_daemon()
        facts["intent_after_start"] = (self.state_dir / "apply-intent.json").exists()
        self.refresh("after_crash")
        facts["human_after_crash"] = self.livepatch("status")
        facts["bug_module_loaded"] = Path(f"/sys/module/{BUG}").exists()
        facts["bug_in_kernel_log"] = [line for line in dmesg_lines() if BUG in line]

    def run_phase(self, phase: str) -> dict[str, Any]:
        try:
            getattr(self, phase)()
        finally:
            self.stop_daemon()
        self.facts["timings"] = self.timings
        return self.facts


def main(phase: str, exchange: str) -> int:
    try:
        results = {phase: {"ok": True, "facts": SafetyGuest(Path(exchange)).run_phase(phase)}}
    except Exception as error:
        traceback.print_exc()
        results = {phase: {"ok": False, "error": repr(error), "traceback": traceback.format_exc()}}
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
