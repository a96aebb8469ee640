from __future__ import annotations

from pathlib import Path

import pytest

from livepatch.kernel import LivepatchDriver
from tests.unit.kernel.fakes import FakeKernel, FakeSyscalls, make_module


@pytest.fixture
def kernel(tmp_path: Path) -> FakeKernel:
    root = tmp_path / "root"
    root.mkdir()
    return FakeKernel(root)


@pytest.fixture
def driver(kernel: FakeKernel) -> LivepatchDriver:
    driver = LivepatchDriver(
        kernel.root,
        syscalls=FakeSyscalls(kernel),
        clock=kernel.clock,
        sleep=kernel.sleep,
        poll_interval=0.05,
    )
    # A sysfs store acts before write() returns: writing 0 to `enabled`
    # starts the unpatching transition at once, so the fake reacts likewise.
    write_text = driver.files.write_text

    def write_then_react(relative: str, value: str) -> None:
        write_text(relative, value)
        kernel.tick()

    driver.files.write_text = write_then_react  # type: ignore[method-assign]
    return driver


@pytest.fixture
def module_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(name: str = "demo_patch", **options: object) -> Path:
        path = tmp_path / f"{name.replace('_', '-')}.ko"
        path.write_bytes(make_module(name, **options))  # type: ignore[arg-type]
        return path

    return write
