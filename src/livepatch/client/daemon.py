"""The long-running service: check in on a timer, answer the control socket and D-Bus.

One asyncio loop, one timer: between check-ins the daemon sleeps in a single
wait for "timer due, refresh asked, reload asked, or stop", so it does not
wake up in between. Check-ins (HTTP, finit_module) run in a worker thread,
one at a time. D-Bus is optional: without ``livepatch.dbus`` or a bus the
daemon logs once and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from livepatch.client import commands, transitions
from livepatch.client.blocked import blocked_document
from livepatch.client.checkin import CheckIn, Outcome, Runtime, error_record
from livepatch.client.config import DEFAULT_CHECK_INTERVAL
from livepatch.client.config import load as load_config
from livepatch.client.errors import NotEnabled
from livepatch.client.schedule import next_delay
from livepatch.client.sdnotify import notify
from livepatch.client.state import CheckState, State, StateFile
from livepatch.client.store import clean_temporaries, locked
from livepatch.errors import LivepatchError
from livepatch.kernel.errors import AccessDenied

log = logging.getLogger(__name__)


class BusService(Protocol):
    async def start(self, bus_address: str | None = None) -> None: ...
    def status_changed(self, doc: dict[str, Any]) -> None: ...
    def patch_applied(self, patch_id: str, cves: list[str]) -> None: ...
    def patch_failed(self, patch_id: str, reason: str) -> None: ...
    async def stop(self) -> None: ...


BusFactory = Callable[[Callable[[], dict[str, Any]], Callable[[], Any]], BusService]


def default_bus() -> BusFactory | None:
    try:
        from livepatch.dbus.service import LivepatchBusService
    except ImportError as error:
        log.warning("D-Bus interface disabled: %s", error)
        return None
    factory: BusFactory = LivepatchBusService
    return factory


def _health_due(state: State) -> datetime | None:
    """When the watched patch's window ends, unless a check already ran since then
    (it judged the patch, or failed before it could: the next regular check retries,
    rather than waking again at once)."""
    watch = state.watch
    if watch is None or (state.last_check is not None and state.last_check >= watch.until):
        return None
    return watch.until


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        *,
        bus: BusFactory | None = None,
        bus_address: str | None = None,
        draw: Callable[[], float] = random.random,
        motd: Path | None = None,
        isolate: bool = False,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """`motd`: where to keep the login-message fragment (None: write none).
        `isolate`: run each check-in in a forked child (see ``isolation``), so the
        modules it imports never stay in the daemon.
        `on_status`: told every new status document (the snap reports its health)."""
        self.rt = runtime
        self.motd = motd
        self.isolate = isolate
        self.checkin = CheckIn(runtime)
        self.bus_factory = bus
        self.bus_address = bus_address
        self.draw = draw
        self.bus: BusService | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._check_lock = asyncio.Lock()
        self._doc: dict[str, Any] = {}
        self.checks = 0
        self.on_status = on_status
        self._denied: str | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        paths = self.rt.paths
        paths.ensure()
        with locked(paths.daemon_lock, wait=False, mode=0o644):
            paths.daemon_lock.write_text(f"{os.getpid()}\n")
            for leftover in clean_temporaries(paths.root):
                log.info("removed %s left by an interrupted write", leftover.name)
            await self._view()
            server = await self._serve_control()
            await self._start_bus()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
            notify("READY=1\nSTATUS=" + self._summary())
            try:
                await self._loop()
            finally:
                notify("STOPPING=1")
                server.close()
                await server.wait_closed()
                paths.control.unlink(missing_ok=True)
                if self.bus is not None:
                    with contextlib.suppress(Exception):
                        await self.bus.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _loop(self) -> None:
        first = True
        while not self._stopping:
            delay = self._delay(first)
            first = False
            if delay is None or delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if self.stopping:
                    break
                if not self._due():
                    continue
            await self.check()

    def _state(self) -> State:
        return StateFile(self.rt.paths.state).load()

    def _delay(self, first: bool) -> float | None:
        """Seconds to sleep; None when not enrolled (sleep until asked)."""
        state = self._state()
        if state.enrolment is None:
            return None
        if first and state.check_state is CheckState.NEEDS_CHECK:
            return self.rt.timing.startup_jitter * self.draw()
        if state.next_check is None:
            return 0.0
        wake = _earliest(state.next_check, _health_due(state))
        assert wake is not None
        return max(0.0, (wake - self.rt.clock()).total_seconds())

    def _due(self) -> bool:
        """A check-in is due, or a watched patch's health window has passed (a check-in
        judges it and sends the verdict)."""
        state = self._state()
        if state.enrolment is None:
            return False
        soon = self.rt.clock() + timedelta(seconds=0.5)
        due = _health_due(state)
        if due is not None and due <= soon:
            return True
        return state.next_check is None or state.next_check <= soon

    # -- check-ins -----------------------------------------------------------------

    async def check(self) -> Outcome:
        """Run one check-in in a worker thread, schedule the next, publish the result."""
        async with self._check_lock:
            try:
                if self.isolate:
                    from livepatch.client.isolation import run_forked

                    outcome = await asyncio.to_thread(run_forked, self.checkin.run, self._state)
                else:
                    outcome = await asyncio.to_thread(self.checkin.run)
            except NotEnabled as error:
                outcome = Outcome(self._state(), error)
            except LivepatchError as error:
                log.error("check-in failed: %s", error)
                outcome = Outcome(self._state(), error)
            self.checks += 1
            if outcome.state.enrolment is not None:
                wait = outcome.error.retry_after if outcome.error is not None else None
                await asyncio.to_thread(self._schedule, wait)
            self._publish(outcome)
            self._wake.set()  # the timer loop re-reads the schedule
            return outcome

    def _schedule(self, retry_after: float | None = None) -> None:
        """Save when to check next; `retry_after` is the wait the service asked for."""
        with locked(self.rt.paths.lock):
            states = StateFile(self.rt.paths.state)
            state = states.load()
            interval = self._check_interval() * 60.0
            delay = next_delay(interval, state.failures, self.draw(), self.rt.timing, retry_after)
            when = self.rt.clock() + timedelta(seconds=delay)
            states.save(transitions.scheduled(state, when))
        log.info("next check-in at %s", when.isoformat())

    def _check_interval(self) -> int:
        """Minutes between check-ins; the default while the config file is unreadable
        (the check-in records that error in the state for `livepatch status`)."""
        try:
            return load_config(self.rt.paths.config).check_interval
        except LivepatchError as error:
            log.error("%s", error)
            return DEFAULT_CHECK_INTERVAL

    async def _view(self) -> None:
        """Square the state with the kernel and rebuild the status document.

        A kernel file the confinement denies (a plug not connected yet) leaves the
        daemon up and blocked: it says so once, answers with a document whose error
        names the plug, and tries again on `reload` (the connect-plug hooks send it)
        and on every timer."""
        try:
            await asyncio.to_thread(self.checkin.reconcile)
            self._doc = await asyncio.to_thread(commands.status, self.rt)
        except AccessDenied as error:
            self._blocked(error)
        else:
            self._unblocked()
        self._write_motd()
        self._status_changed()

    def _blocked(self, error: LivepatchError) -> None:
        """Answer with a document whose only error names the plug; log it once."""
        if self._denied != str(error):
            log.error("%s", error)
        self._denied = str(error)
        self._doc = blocked_document(self.rt.paths.state, error, daemon_running=True)

    def _unblocked(self) -> None:
        if self._denied is not None:
            log.info("kernel files readable again: no longer blocked")
        self._denied = None

    def _status_changed(self) -> None:
        if self.on_status is not None:
            try:
                self.on_status(self._doc)
            except Exception as error:  # a report channel is never a reason to stop
                log.warning("status report failed: %s", error)

    def _publish(self, outcome: Outcome) -> None:
        """A check-in that a denied kernel file stopped (a plug disconnected while the
        daemon runs: `commands.status` alone would not notice) blocks like one at start-up."""
        if outcome.error is not None and outcome.error.code == AccessDenied.code:
            self._blocked(outcome.error)  # (from a forked check-in: a plain LivepatchError)
        else:
            try:
                self._doc = commands.status(self.rt)
            except AccessDenied as error:
                self._blocked(error)
            except LivepatchError as error:
                log.error("cannot build the status document: %s", error)
                return
            else:
                self._unblocked()
        notify("STATUS=" + self._summary())
        self._write_motd()
        self._status_changed()
        if self.bus is None:
            return
        try:
            self.bus.status_changed(self._doc)
            if outcome.applied is not None:
                cves = [cve.id for cve in outcome.applied.cves]
                self.bus.patch_applied(outcome.applied.patch_id, cves)
            if outcome.failed is not None and outcome.error is not None:
                self.bus.patch_failed(outcome.failed.patch_id, str(outcome.error))
        except Exception as error:  # the bus is a convenience, never a reason to stop
            log.warning("D-Bus update failed: %s", error)

    def _write_motd(self) -> None:
        """Re-render the login-message fragment from the current status document."""
        if self.motd is None:
            return
        from livepatch import motd

        try:
            motd.write_fragment(self.motd, motd.render(self._doc, self.rt.clock()))
        except OSError as error:
            log.warning("cannot write the login message fragment %s: %s", self.motd, error)

    def _summary(self) -> str:
        status = (self._doc.get("Status") or [{}])[0]
        state = status.get("Livepatch", {}).get("State", "unknown")
        return f"kernel {status.get('Kernel', '?')}, patch state {state}"

    # -- control socket and bus ----------------------------------------------------

    async def _serve_control(self) -> asyncio.AbstractServer:
        path = self.rt.paths.control
        path.unlink(missing_ok=True)
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        return server

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            command = request.get("command") if isinstance(request, dict) else None
            answer = await self._answer(command)
            writer.write(json.dumps(answer).encode())
            await writer.drain()
        except (ValueError, OSError) as error:
            log.warning("bad control request: %s", error)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, command: object) -> dict[str, Any]:
        if command == "refresh":
            outcome = await self.check()
            answer: dict[str, Any] = {"ok": outcome.error is None, "status": self._doc}
            if outcome.error is not None:
                answer["error"] = vars(error_record(outcome.error))
            return answer
        if command == "reload":
            await self._view()
            self._wake.set()
            if self.bus is not None:
                self.bus.status_changed(self._doc)
            return {"ok": True}
        if command == "status":
            return {"ok": True, "status": self._doc}
        return {"ok": False, "error": {"code": "bad-request", "message": "Unknown command."}}

    async def _refresh_for_bus(self) -> dict[str, Any]:
        await self.check()
        return self._doc

    async def _start_bus(self) -> None:
        if self.bus_factory is None:
            return
        try:
            bus = self.bus_factory(lambda: self._doc, self._refresh_for_bus)
            await bus.start(self.bus_address)
        except Exception as error:
            log.warning("D-Bus interface unavailable, continuing without it: %s", error)
            return
        self.bus = bus
