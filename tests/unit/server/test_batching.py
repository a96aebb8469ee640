"""The batching thread behind reports and check-ins."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from livepatch.server.batching import Batcher


def test_items_queued_while_a_batch_runs_are_handled_together() -> None:
    release = threading.Event()
    batches: list[list[int]] = []
    done: Future[None] = Future()

    def handle(batch: list[int]) -> None:
        batches.append(batch)
        if batch == [0]:
            release.wait(10)  # hold the thread while more items queue up
        if sum(len(b) for b in batches) == 6:
            done.set_result(None)

    batcher: Batcher[int] = Batcher("test", handle)
    batcher.put(0)
    while not batches:
        threading.Event().wait(0.01)
    for item in range(1, 6):
        batcher.put(item)
    release.set()
    done.result(timeout=10)
    batcher.close()
    assert batches == [[0], [1, 2, 3, 4, 5]]


def test_a_failing_batch_does_not_stop_the_thread() -> None:
    seen: list[list[str]] = []

    def handle(batch: list[str]) -> None:
        seen.append(batch)
        if batch == ["bad"]:
            raise RuntimeError("boom")

    batcher: Batcher[str] = Batcher("test", handle)
    batcher.put("bad")
    batcher.close()
    batcher.put("good")
    batcher.close()
    assert seen == [["bad"], ["good"]]
