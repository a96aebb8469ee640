"""The server's periodic work: apply the rollout engine, keep the timestamp fresh.

TUF timestamps expire so that a frozen mirror is noticed; re-signing it
regularly is what keeps clients from rejecting a healthy server. The same
refresh publishes the module-signing certificate bundle again once a retired
certificate's grace period has ended, so it leaves the bundle with no
administrator action (clients already stop trusting it then). Both jobs
run in a worker thread (they do database and file I/O) and a failure is
logged and retried next round, never fatal to the API.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from livepatch.server import patches
from livepatch.server.service import Service

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0


def due(last: datetime | None, now: datetime, every_seconds: float) -> bool:
    return last is None or (now - last).total_seconds() >= every_seconds


def run_once(service: Service, *, refresh_timestamp: bool) -> None:
    """One round: the engine's decisions, then (if asked) a fresh timestamp."""
    decisions = patches.apply_engine(service)
    for patch_id, decision in decisions:
        log.info("%s: %s (%s)", patch_id, decision.action.value, decision.reason)
    if refresh_timestamp:
        with service.publisher.locked():
            service.publisher.refresh_timestamp()


async def run_periodic(service: Service) -> None:
    last_engine: datetime | None = None
    last_timestamp = service.clock()
    while True:
        now = service.clock()
        engine_due = due(last_engine, now, service.config.engine_interval.total_seconds())
        stamp_due = due(last_timestamp, now, service.config.timestamp_refresh.total_seconds())
        if engine_due or stamp_due:
            try:
                await asyncio.to_thread(run_once, service, refresh_timestamp=stamp_due)
            except Exception:
                log.exception("periodic rollout work failed; retrying next round")
            else:
                last_engine = now
                if stamp_due:
                    last_timestamp = now
        await asyncio.sleep(min(TICK_SECONDS, service.config.engine_interval.total_seconds()))
