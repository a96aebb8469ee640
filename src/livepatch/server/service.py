"""The running service's parts, wired once and shared by the API and the admin.

`Service` owns the database, the blob store and its cached view, the
metrics and the clock; the metadata publisher (TUF signing) is opened on
first use because reading keys is only needed when something is published
or a machine enrols.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from livepatch.server.blobs import BlobStore, DirectoryBlobStore
from livepatch.server.config import ServerConfig
from livepatch.server.errors import Conflict, ServerError
from livepatch.server.metrics import Metrics
from livepatch.server.publishing import Publisher
from livepatch.server.static import StaticFiles
from livepatch.server.storage.database import Database

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Busy(ServerError):
    status = 503
    code = "busy"

    def __init__(self) -> None:
        super().__init__("The service is busy or its database is unavailable: try again shortly.")


class Service:
    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Clock = utcnow,
        store: BlobStore | None = None,
        database: Database | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.database = database or Database(config.database_url)
        self.store: BlobStore = store or DirectoryBlobStore(config.blob_dir)
        self.static = StaticFiles(self.store)
        self.metrics = Metrics()

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher.open(self.config, self.store, self.clock)

    def root(self) -> dict[str, Any]:
        """The current TUF root metadata, which a machine pins at enrolment."""
        document: dict[str, Any] = json.loads(self.publisher.root_json())
        return document

    @contextmanager
    def transaction(self, *, readonly: bool = False, durable: bool = True) -> Iterator[Session]:
        """A database transaction whose storage failures become API errors."""
        try:
            with self.database.transaction(readonly=readonly, durable=durable) as session:
                yield session
        except IntegrityError as error:
            raise Conflict(
                "Another request changed the same record at the same time: try again."
            ) from error
        except OperationalError as error:
            raise Busy() from error

    def close(self) -> None:
        self.database.dispose()
