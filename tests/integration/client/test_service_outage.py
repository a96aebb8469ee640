"""The daemon through an outage of the real patch service: backoff while it is down,
then recovery on its own once it is back (a patch published meanwhile gets applied)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from livepatch.client import commands, control
from livepatch.client.daemon import Daemon
from livepatch.client.schedule import Timing
from livepatch.client.state import CheckState, State, StateFile
from tests.integration.client.service import PatchService
from tests.integration.client.test_real_service import machine

pytestmark = pytest.mark.slow

BASE, CAP = 0.4, 3.2
TIMING = Timing(jitter=0.0, backoff_base=BASE, backoff_cap=CAP, startup_jitter=0.0)


def test_backoff_while_down_then_recovery_without_operator(tmp_path: Path) -> None:
    service = PatchService(tmp_path / "service")
    service.start()
    try:
        m = machine(tmp_path, service)
        service.publish(m.key, "lp_outage_1")
        assert commands.enable(m.rt, service.token()).outcome.error is None  # type: ignore[union-attr]
        rt = replace(m.rt, clock=lambda: datetime.now(UTC), timing=TIMING)
        states = StateFile(rt.paths.state)
        service.stop()
        seen: dict[int, State] = {}

        async def scenario() -> None:
            # As `livepatch daemon` runs it: each check-in in a forked child.
            daemon = Daemon(rt, isolate=True)
            task = asyncio.create_task(daemon.run())
            try:
                while not rt.paths.control.exists():
                    await asyncio.sleep(0.02)
                # (it checked at start too: nothing was scheduled yet)
                answer = await asyncio.to_thread(control.request, rt.paths.control, "refresh")
                assert answer["ok"] is False
                assert answer["error"]["code"] == "service-unreachable"
                while max(seen, default=0) < 5:  # retries on its own, further apart each time
                    state = states.load()
                    seen[state.failures] = state  # the last one of each count is scheduled
                    await asyncio.sleep(0.02)
                service.publish(m.key, "lp_outage_2")  # the operator fixes the service...
                await asyncio.to_thread(service.start)  # ...and does nothing to the machine
                deadline = time.monotonic() + 30
                while states.load().applied is None or states.load().applied.version != "2":  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, f"no recovery: {states.load()}"
                    await asyncio.sleep(0.05)
            finally:
                daemon.stop()
                await task

        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        service.stop()

    assert {2, 3, 4} <= set(seen), sorted(seen)
    for failures in (2, 3, 4):
        state = seen[failures]
        assert state.check_state is CheckState.CHECK_FAILED
        assert state.errors[0].code == "service-unreachable"
        assert state.errors[0].message.startswith(
            f"Cannot reach the patch service at {service.url}"
        )
        assert state.next_check is not None and state.last_check is not None
        delay = (state.next_check - state.last_check).total_seconds()
        ceiling = min(CAP, BASE * 2 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling + 0.5, (failures, delay)
    recovered = states.load()
    assert recovered.failures == 0 and recovered.errors == ()
    assert recovered.check_state is CheckState.CHECKED
    # loaded by a forked check-in: the kernel tree shows it
    assert (m.kernel.root / "sys/kernel/livepatch/lp_outage_2/enabled").read_text() == "1\n"
    # healthy again: the next check is a whole interval away, not another retry
    assert recovered.next_check is not None
    assert recovered.next_check - datetime.now(UTC) > timedelta(minutes=50)
