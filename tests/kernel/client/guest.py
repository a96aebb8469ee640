"""Inside the VM: the daemon and the `livepatch` command, for real, against the
patch service on the host (reached over qemu user networking).

Usage (in the guest, as root): python -m tests.kernel.client.guest EXCHANGE
where EXCHANGE is a host directory the guest may write, holding input.json
({"url", "ca", "token", "patches": {"v1", "v2"}}) from the host.

The host has published v1 (CVE-2024-1086) and v2 (cumulative: that CVE and
CVE-2023-3390), both signed by the service's key and rolled out to all, and
halted v2. Here: `livepatch config`, start `livepatch daemon`, `livepatch
enable TOKEN` (the daemon checks in and applies v1 live, never the halted
v2); write EXCHANGE/halted-checked and wait for the host to resume v2 and
write EXCHANGE/resumed; `livepatch refresh` applies v2. Facts are printed as
one results line (tests.vm.report); the host asserts on them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from livepatch.kernel import read_identity
from tests.demo.guest import connect
from tests.kernel.guest.kmsg import dmesg_lines
from tests.vm.report import emit

BIN = Path(sys.executable).parent
V2 = "livepatch_cmdline_v2"
HOST_WAIT = 60.0


def cmdline() -> str:
    return Path("/proc/cmdline").read_text().strip()


def loaded_patches() -> list[str]:
    return sorted(path.name for path in Path("/sys/kernel/livepatch").iterdir())


class Guest:
    def __init__(self, exchange: Path) -> None:
        self.exchange = exchange
        self.input = json.loads((exchange / "input.json").read_text())
        self.work = Path(tempfile.mkdtemp(prefix="livepatch-client-"))
        self.env = {
            **os.environ,
            "LIVEPATCH_STATE_DIR": str(self.work / "client"),
            "LIVEPATCH_MOTD_FRAGMENT": str(self.work / "motd"),
            "NO_COLOR": "1",
        }
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self.started, 1)
        print(f"guest: {step} at {self.timings[step]} s", flush=True)

    def livepatch(self, *argv: str) -> dict[str, Any]:
        started = time.monotonic()
        result = subprocess.run(
            [str(BIN / "livepatch"), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=240,
        )
        return {
            "argv": list(argv),
            "returncode": result.returncode,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "seconds": round(time.monotonic() - started, 1),
        }

    def status(self) -> Any:
        result = self.livepatch("status", "--format", "json")
        assert result["returncode"] == 0, result
        return json.loads(result["stdout"])

    def wait_for_host(self, name: str) -> None:
        deadline = time.monotonic() + HOST_WAIT
        while not (self.exchange / name).exists():
            assert time.monotonic() < deadline, f"the host did not write {name}"
            time.sleep(0.2)

    def wait_for_network(self) -> None:
        """Reach the service once: under TCG virtme's DHCP client may not have
        configured the network yet, or at all (then it is set by hand)."""
        url = urlsplit(self.input["url"])
        assert url.hostname is not None and url.port is not None, url
        connect(url.hostname, url.port).close()

    def run(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"cmdline_before": cmdline(), "kernel_key": read_identity().key}
        self.wait_for_network()
        self.mark("network up")
        facts["config"] = self.livepatch(
            "config", f"remote-server={self.input['url']}", f"ca-certs={self.input['ca']}"
        )
        self.mark("configured")
        log = self.work / "daemon.log"
        with log.open("w") as stream:
            daemon = subprocess.Popen(
                [str(BIN / "livepatch"), "daemon"],
                env=self.env,
                stdout=stream,
                stderr=subprocess.STDOUT,
            )
        try:
            control = self.work / "client" / "control.sock"
            deadline = time.monotonic() + 120
            while not control.exists():
                assert daemon.poll() is None, f"the daemon exited: {log.read_text()}"
                assert time.monotonic() < deadline, "the daemon did not start"
                time.sleep(0.1)
            self.mark("daemon up")

            facts["enable"] = self.livepatch("enable", self.input["token"])
            assert facts["enable"]["returncode"] == 0, facts["enable"]
            facts["cmdline_enabled"] = cmdline()
            facts["patches_enabled"] = loaded_patches()
            facts["v2_module_while_halted"] = Path(f"/sys/module/{V2}").exists()
            facts["v2_in_kernel_log_while_halted"] = [line for line in dmesg_lines() if V2 in line]
            self.mark("enabled")
            facts["status_enabled"] = self.status()
            facts["motd_enabled"] = Path(self.env["LIVEPATCH_MOTD_FRAGMENT"]).read_text()
            self.mark("status")

            (self.exchange / "halted-checked").write_text("1")
            self.wait_for_host("resumed")
            facts["refresh_resumed"] = self.livepatch("refresh")
            facts["cmdline_resumed"] = cmdline()
            facts["patches_resumed"] = loaded_patches()
            self.mark("refreshed after resume")
            facts["status_resumed"] = self.status()
            self.mark("status after resume")
        finally:
            daemon.send_signal(signal.SIGTERM)
            facts["daemon_exit"] = daemon.wait(timeout=60)
            facts["daemon_log"] = log.read_text()[-4000:]
        facts["timings"] = self.timings
        return facts


def main(exchange: str) -> int:
    try:
        results = {"client": {"ok": True, "facts": Guest(Path(exchange)).run()}}
    except Exception as error:
        traceback.print_exc()
        results = {
            "client": {"ok": False, "error": repr(error), "traceback": traceback.format_exc()}
        }
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
