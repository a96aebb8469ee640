"""Engines and sessions for SQLite (default) and PostgreSQL, and migrations.

SQLite runs in WAL mode so readers never block the writer, and every
writing transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken
up front, so two enrolments racing for a token's last slot serialise instead
of both reading "one slot left". Writers of one process also queue on a
lock before asking SQLite, whose busy handler would otherwise make them
sleep in steps of up to 100 ms. Read-only transactions begin DEFERRED and
never wait for writers. On PostgreSQL the enrolment guarantee comes from
``SELECT … FOR UPDATE`` on the token row (see ``machines.py``).

Telemetry (reports, check-ins) may be written non-durably: on PostgreSQL
such a transaction sets ``synchronous_commit = off``, so a crash can lose
the last moments of reports but never corrupts anything, and reports do not
wait for a disk flush each.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from livepatch.server.errors import ConfigurationError
from livepatch.server.private import private_directory, private_file

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT = 30.0
READONLY = "livepatch_readonly"


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as error:
            raise ConfigurationError(
                f"The database URL {url!r} is not valid: use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/DB."
            ) from error
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigurationError(
                f"Unsupported database {self.dialect!r}: use SQLite or PostgreSQL."
            )
        try:
            if self.dialect == "sqlite":
                self.engine = _sqlite_engine(url, parsed.database)
            else:
                self.engine = create_engine(
                    url, pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True
                )
        except NoSuchModuleError as error:
            raise ConfigurationError(
                f"No driver for {parsed.drivername!r}: use postgresql+psycopg://."
            ) from error
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._batches = self._batch_engine(url)
        self._writer = threading.Lock()

    @contextmanager
    def transaction(self, *, readonly: bool = False, durable: bool = True) -> Iterator[Session]:
        """A session inside one transaction, committed on success.

        `readonly` transactions must not write (on SQLite they take no write
        lock); `durable=False` allows losing the commit on a crash (telemetry).
        """
        queue: AbstractContextManager[object] = nullcontext()
        if self.dialect == "sqlite" and not readonly:
            queue = self._writer
        with queue, self.sessions() as session:
            connection = session.connection(execution_options={READONLY: readonly})
            if not durable and self.dialect == "postgresql":
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield session
            session.commit()

    @contextmanager
    def connection(self, *, durable: bool = True) -> Iterator[Connection]:
        """A Core connection inside one writing transaction, committed on success.

        For hot paths that write with prepared statements and need no ORM;
        `durable=False` allows losing the commit on a crash (telemetry batches).
        """
        queue: AbstractContextManager[object] = nullcontext()
        if self.dialect == "sqlite":
            queue = self._writer
        with queue, (self.engine if durable else self._batches).begin() as connection:
            yield connection

    def _batch_engine(self, url: str) -> Engine:
        """The engine of non-durable batches (telemetry): on PostgreSQL, no round trip
        but the batch's own.

        The one batching thread per process writes all the time, so its
        connection is not pinged before each batch and commits without
        waiting for the disk (``synchronous_commit=off``, set once per
        connection). A connection that broke meanwhile fails its batch, is
        discarded, and the batch's reports are written one by one through
        the pinged engine.
        """
        if self.dialect != "postgresql":
            return self.engine
        return create_engine(
            url,
            pool_size=1,
            max_overflow=1,
            pool_pre_ping=False,
            connect_args={"options": "-c synchronous_commit=off"},
        )

    def migrate(self) -> None:
        """Bring the schema to the newest migration shipped in the package."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._batches is not self.engine:
            self._batches.dispose()


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        path = Path(database)
        if not path.parent.exists():  # an existing one may be shared (/tmp): left alone
            private_directory(path.parent)
        private_file(path)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, start transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    return engine
