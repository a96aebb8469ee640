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
        self.sample: str | None = None

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        if argv[:1] == ["admin"]:
            return 0, self.service.admin(*argv[1:])
        if argv == ["kernel-key"]:
            return 0, default_release() + "\n"
        if argv == ["publish-sample"]:
            if self.sample is None:  # the service refuses the same module name twice
                module = build_modules(SAMPLE_MODULES)[SAMPLE]
                self.sample = self.service.publish(default_release(), SAMPLE, module=module)
            return 0, self.sample + "\n"
        return 2, f"unknown host call {argv}\n"


def _share(base: Path, snap: Path, ca: Path) -> Path:
    share = base / "share"
    project = share / "project"
    (project / "tests/kernel").mkdir(parents=True)
    shutil.copy2(REPO / "spread.yaml", project / "spread.yaml")
    shutil.copytree(REPO / "tests/spread", project / "tests/spread")
    shutil.copytree(SAMPLE_MODULES, project / "tests/kernel/modules/cmdline")
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
