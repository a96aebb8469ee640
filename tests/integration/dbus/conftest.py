from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.dbus.buses import OPEN, Bus, private_bus


@pytest.fixture
def system_bus() -> Iterator[Bus]:
    """A system-like bus: Debian's default policy plus interfaces/io.livepatch.Livepatch1.conf."""
    with private_bus("system") as bus:
        yield bus


@pytest.fixture
def open_bus() -> Iterator[Bus]:
    """A bus whose policy allows everything, so only the service's own checks apply."""
    with private_bus("system", policy=OPEN, ours=False) as bus:
        yield bus
