"""Fixtures for the patch service: a database of each kind, a service over it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from livepatch.server.config import load_config
from livepatch.server.service import Service


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = datetime(2026, 3, 1, tzinfo=UTC)) -> None:
        self.now = start

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
