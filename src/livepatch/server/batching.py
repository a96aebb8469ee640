"""A thread that handles queued work in batches: the cure for lock convoys.

Many requests each doing a small database operation in its own transaction
queue on the database (SQLite's single write lock, one commit or round trip
each) and on the thread pool. A `Batcher` instead takes everything queued
since its last round and hands it to one call, which can use one
transaction, one ``IN (…)`` query, one commit. When the service is idle a
batch is a single item and nothing waits for company.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")

MAX_BATCH = 512


class Batcher(Generic[Item]):
    """Calls `handle` with lists of queued items from one thread, started on first use.

    `handle` must settle every item it is given (e.g. resolve its future);
    an exception escaping it is logged and the thread carries on.
    """

    def __init__(self, name: str, handle: Callable[[list[Item]], None]) -> None:
        self.name = name
        self.handle = handle
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def put(self, item: Item) -> None:
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    thread.start()
                    self._thread = thread
        self._queue.put(item)

    def close(self) -> None:
        """Handle what is queued, then stop the thread."""
        with self._start:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self.handle(batch)
            except Exception:  # never let the thread die: waiting requests would hang
                log.exception("%s: handling a batch of %d failed", self.name, len(batch))
