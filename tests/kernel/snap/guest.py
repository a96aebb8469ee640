"""Inside the VM: the packaged client (the unpacked .snap) patches the real kernel.

Usage (in the guest, as root): python -m tests.kernel.snap.guest PLAN
where PLAN is a JSON file {"snap": unpacked $SNAP, "modules": {name: .ko}}.

The snap's apps and hooks run from the unpacked tree exactly as in
tests/snap (tests/snap/snapd.py: snapd's environment, the stand-in snapctl);
its interpreter is the host's /usr/bin/python3.X, which the VM shares. The
patch service runs here too (tests/integration/client/service.py). In order:
install hook; `snap set` remote-server and ca-certs (configure hook); the
daemon app starts; `livepatch enable TOKEN` with nothing published yet;
v1 is published; `livepatch refresh` applies it live; `livepatch status`;
check-health; pre-refresh; post-refresh of the next revision (its self-test
reads this kernel); the daemon stops; the remove hook de-enrols and leaves
the patch loaded. Facts go to the host as one results line (tests.vm.report).
"""

from __future__ import annotations

import contextlib
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

import httpx

from livepatch.kernel import read_identity
from tests.integration.client.service import SERVER, PatchService
from tests.snap.snapd import InstalledSnap
from tests.vm.report import emit

V1 = "livepatch_cmdline_v1"


def cmdline() -> str:
    return Path("/proc/cmdline").read_text().strip()


def loaded_patches() -> list[str]:
    return sorted(path.name for path in Path("/sys/kernel/livepatch").iterdir())


def outcome(done: Any) -> dict[str, Any]:
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def start_service(service: PatchService, timeout: float = 300.0) -> None:
    """`service.start()` with a deadline fit for a loaded TCG guest (python starts slowly)."""
    log = (service.base / "server.log").open("ab")
    service.process = subprocess.Popen(
        [
            str(SERVER),
            "serve",
            "--data-dir",
            str(service.data),
            "--port",
            str(service.port),
            "--tls-cert",
            str(service.cert),
            "--tls-key",
            str(service.key),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while True:
        if service.process.poll() is not None:
            raise AssertionError(f"the server exited:\n{service.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if service.http().get("/healthz").status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not start in {timeout:g} s:\n{service.log()}")
        time.sleep(0.5)


class Guest:
    def __init__(self, snap_root: Path, modules: dict[str, Path]) -> None:
        self.modules = modules
        self.work = Path(tempfile.mkdtemp(prefix="livepatch-snap-"))
        self.snap = InstalledSnap(snap_root, self.work / "system")
        self.extra = {"NO_COLOR": "1"}
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()

    def mark(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self.started, 2)

    def livepatch(self, *argv: str) -> dict[str, Any]:
        return outcome(self.snap.run_app("livepatch", *argv, extra=self.extra, timeout=300))

    def hook(self, name: str, snap: InstalledSnap | None = None) -> dict[str, Any]:
        return outcome((snap or self.snap).run_hook(name, timeout=300))

    def run(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"cmdline_before": cmdline()}
        key = read_identity().key
        facts["kernel_key"] = key
        service = PatchService(self.work / "service")
        start_service(service)
        self.mark("service up")
        daemon = None
        try:
            facts["install"] = self.hook("install")
            facts["configure"] = outcome(
                self.snap.snap_set(remote_server=service.url, ca_certs=str(service.ca))
            )
            daemon_log = self.work / "daemon.log"
            daemon = self.snap.start_app("livepatchd", log=daemon_log, extra=self.extra)
            control = self.snap.data / "control.sock"
            deadline = time.monotonic() + 120
            while not control.exists():
                assert daemon.poll() is None, daemon_log.read_text()
                assert time.monotonic() < deadline, "the daemon did not start"
                time.sleep(0.1)
            self.mark("daemon up")

            facts["enable"] = self.livepatch("enable", service.token())
            facts["patches_after_enable"] = loaded_patches()
            self.mark("enabled")

            facts["patch_id"] = service.publish(key, V1, module=self.modules[V1])
            facts["refresh"] = self.livepatch("refresh")
            facts["cmdline_refreshed"] = cmdline()
            facts["patches_refreshed"] = loaded_patches()
            status = self.livepatch("status", "--format", "json")
            facts["status"] = json.loads(status["stdout"]) if status["returncode"] == 0 else status
            facts["status_text"] = self.livepatch("status")
            self.mark("refreshed")

            facts["check_health"] = self.hook("check-health")
            facts["health"] = self.snap.health
            facts["pre_refresh"] = self.hook("pre-refresh")
            self.mark("health")

            daemon.send_signal(signal.SIGTERM)
            facts["daemon_exit"] = daemon.wait(timeout=60)
            facts["daemon_log"] = daemon_log.read_text()[-4000:]
            daemon = None
            next_revision = self.snap.revision_copy(
                "x2", same_files=True
            )  # $SNAP is read-only here
            facts["post_refresh"] = self.hook("post-refresh", next_revision)
            self.mark("post-refresh")

            facts["remove"] = self.hook("remove", next_revision)
            facts["cmdline_removed"] = cmdline()
            facts["patches_removed"] = loaded_patches()
            facts["reports"] = service.reports(facts["patch_id"])
            facts["journal"] = (self.snap.common / "hooks.log").read_text()
            self.mark("removed")
        finally:
            if daemon is not None:
                os.killpg(daemon.pid, signal.SIGTERM)
                daemon.wait(timeout=60)
            service.stop()
        facts["timings"] = self.timings
        return facts


def main(plan_file: str) -> int:
    plan = json.loads(Path(plan_file).read_text())
    modules = {name: Path(path) for name, path in plan["modules"].items()}
    try:
        results = {"snap": {"ok": True, "facts": Guest(Path(plan["snap"]), modules).run()}}
    except Exception as error:
        traceback.print_exc()
        results = {"snap": {"ok": False, "error": repr(error), "traceback": traceback.format_exc()}}
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
