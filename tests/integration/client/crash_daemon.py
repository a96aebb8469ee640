"""`python -m tests.integration.client.crash_daemon STATE KERNEL CATALOG [isolate]`: the
real Daemon over a FileKernel and in-process fakes for the service; the patches on
offer are read from CATALOG (one version number) at each check-in. With `isolate`
each check-in runs in a forked child, as `livepatch daemon` does."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from livepatch.client.checkin import Runtime
from livepatch.client.daemon import Daemon
from livepatch.client.paths import Paths
from livepatch.client.schedule import Timing
from tests.integration.client.filekernel import FileKernel
from tests.unit.client.fakes import FakeMetadata, FakeService, patch


class CatalogMetadata(FakeMetadata):
    def __init__(self, catalog: Path) -> None:
        super().__init__()
        self.catalog = catalog

    def refresh(self) -> None:
        newest = int(self.catalog.read_text())
        self.patches_list = [patch(str(v), module=f"lp_{v}") for v in range(1, newest + 1)]


def runtime(state: Path, kernel: Path, catalog: Path) -> Runtime:
    metadata = CatalogMetadata(catalog)
    service = FakeService(clock=lambda: datetime.now(UTC))  # type: ignore[arg-type]
    return Runtime(
        paths=Paths(state),
        kernel=FileKernel(kernel),
        service=lambda config: service,
        metadata=lambda config, paths, credential: metadata,
        clock=lambda: datetime.now(UTC),
        timing=Timing(startup_jitter=3600.0),
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    state, kernel, catalog = (Path(arg) for arg in sys.argv[1:4])
    isolate = sys.argv[4:5] == ["isolate"]
    asyncio.run(Daemon(runtime(state, kernel, catalog), isolate=isolate).run())


if __name__ == "__main__":
    main()
