"""Fixtures for the patch service: a database of each kind, a service over it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from livepatch.server.config import load_config
from livepatch.server.service import Service
from tests.integration.server.live import LiveServer, live_server


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/livepatch.db"
    server = request.getfixturevalue("postgres")
    return str(server.create_database())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[Service]:
    config = load_config(tmp_path / "data", database_url)
    service = Service(config, clock=clock)
    service.database.migrate()
    try:
        yield service
    finally:
        service.close()


MODULE = (
    b"\x7fELF\x02\x01\x01"
    + b"\x00" * 57
    + b"code" * 64
    + b"\x00license=GPL\x00livepatch=Y\x00name=livepatch_cve_2024_1086\x00vermagic=6.1\x00"
)
"""Enough of a kernel module for the service: an ELF header and a .modinfo name."""


def module_named(name: str) -> bytes:
    """MODULE with another .modinfo name (a patch replacing another needs a new name)."""
    return MODULE.replace(b"name=livepatch_cve_2024_1086", f"name={name}".encode())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """`livepatch-server serve` over TLS, shared by the tests of one module."""
    data_dir = tmp_path_factory.mktemp("live") / "data"
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir}/livepatch.db"
    else:
        url = request.getfixturevalue("postgres").create_database()
    with live_server(data_dir, url) as server:
        yield server


@pytest.fixture(scope="module")
def module_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("module") / "livepatch_cve_2024_1086.ko"
    path.write_bytes(MODULE)
    return path
