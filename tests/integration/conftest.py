"""A real PostgreSQL server for the whole test session (see postgres.py).

Each test gets its own database from `postgres.create_database()`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.postgres import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server
