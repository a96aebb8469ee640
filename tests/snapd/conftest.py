"""One snapd test machine for the whole real-snapd suite (session scope).

The image is built when missing (tests/snapd/image.py); the run boots it once
behind a copy-on-write overlay, with a patch service on the host and a share
holding the .snap `make snap` builds, the spread suites and the service's CA.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from livepatch.snap import build
from tests.integration.client.service import QEMU_HOST, PatchService
from tests.kernel.conftest import SAMPLE_MODULES
from tests.snapd import image
from tests.snapd.machine import Machine
from tests.snapd.spread import HostCalls
from tests.vm import build_modules, default_release

REPO = Path(__file__).resolve().parents[2]
SAMPLE = "livepatch_cmdline_v1"
WARN = "livepatch_cmdline_warn"
MODULES = REPO / "tests/kernel/modules"


@dataclass
class Rig:
    machine: Machine
    service: PatchService
    share: Path
    environment: dict[str, str]
    host: HostCalls
    timings: dict[str, float] = field(default_factory=dict)


class HostSide:
    """What service.sh's host mode asks the host for."""

    def __init__(self, service: PatchService) -> None:
        self.service = service
        self.published: dict[str, str] = {}

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        if argv[:1] == ["admin"]:
            return 0, self.service.admin(*argv[1:])
        if argv == ["kernel-key"]:
            return 0, default_release() + "\n"
        if argv == ["publish-sample"]:
            return 0, self.publish(SAMPLE_MODULES, SAMPLE) + "\n"
        if argv == ["publish-warn"]:  # WARNs when /proc/cmdline is read
            return 0, self.publish(MODULES / "preflight", WARN) + "\n"
        return 2, f"unknown host call {argv}\n"

    def publish(self, sources: Path, name: str) -> str:
        if name not in self.published:  # the service refuses the same module name twice
            module = build_modules(sources)[name]
            self.published[name] = self.service.publish(default_release(), name, module=module)
        return self.published[name]


def _share(base: Path, snap: Path, ca: Path) -> Path:
    share = base / "share"
    project = share / "project"
    (project / "tests/kernel").mkdir(parents=True)
    shutil.copy2(REPO / "spread.yaml", project / "spread.yaml")
    shutil.copytree(REPO / "tests/spread", project / "tests/spread")
    for name in ("cmdline", "preflight", "stall"):
        shutil.copytree(MODULES / name, project / "tests/kernel/modules" / name)
    (share / "modules").mkdir()  # built here for the guest's kernel (tests/spread/lib/stall.sh)
    for module in build_modules(MODULES / "stall").values():
        shutil.copy2(module, share / "modules" / module.name)
    shutil.copy2(snap, share / "livepatch.snap")
    shutil.copy2(ca, share / "ca.pem")
    return share


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    base = tmp_path_factory.mktemp("snapd")
    started = time.monotonic()
    disk = image.image()
    timings = {"image": time.monotonic() - started}
    snap = build.build(REPO, REPO / "build" / "snap").snap
    service = PatchService(base / "service")
    service.start()
    share = _share(base, snap, service.ca)
    environment = {
        "SPREAD_PATH": "/mnt/share/project",
        "PATH": "/snap/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LIVEPATCH_SNAP": "/mnt/share/livepatch.snap",
        "LIVEPATCH_HOST_CALLS": "/mnt/share/host",
        "LIVEPATCH_HOST_SERVICE_URL": f"https://{QEMU_HOST}:{service.port}",
        "LIVEPATCH_HOST_CA": "/mnt/share/ca.pem",
        "LIVEPATCH_TEST_MODULES": "/mnt/share/modules",
        "LIVEPATCH_KEEP_INSTALLED": "1",  # tests/spread/lib/snap.sh: install once
    }
    host = HostCalls(share / "host", HostSide(service))
    try:
        with host.serving(), Machine.boot(disk, share) as machine:
            timings["boot"] = machine.boot_seconds
            ready = machine.run("snap wait system seed.loaded && snap list", timeout=600)
            assert ready.returncode == 0, ready.describe()
            timings["snapd-ready"] = time.monotonic() - started - timings["image"]
            yield Rig(machine, service, share, environment, host, timings)
    finally:
        service.stop()
        print("snapd test machine, seconds:", {k: round(v) for k, v in timings.items()})
