"""Check-ins of a machine enrolled with the real patch service, whose remote-server
then points at a hostile one (real HTTPS on loopback, the same CA): it drips one byte
per read, answers 429 with Retry-After, or sends error text full of escapes.

The drip must not stall the check-in past its deadline nor lock out `config`,
`disable` and `enable` meanwhile; the text must reach neither state.json, `livepatch
status` nor the login message unfiltered; Retry-After must set the next check.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from livepatch import motd
from livepatch.client import commands, render, wiring
from livepatch.client.api import HttpServiceClient
from livepatch.client.checkin import CheckIn, Outcome, Runtime
from livepatch.client.config import Config
from livepatch.client.daemon import Daemon
from livepatch.client.metadata import TufMetadata
from livepatch.client.paths import Paths
from livepatch.client.state import Credential, CredentialFile, PatchState, StateFile
from livepatch.transfer import Limits
from tests.integration.client.hostile import HostileServer, serving
from tests.integration.client.service import PatchService
from tests.integration.client.test_real_service import Machine, machine

pytestmark = pytest.mark.slow

LIMITS = Limits(floor=3.0, min_rate=512_000.0)
"""Metadata downloads here may carry up to 512,000 bytes (tuf's root cap): 4 s each."""
DEADLINE = 4.0
ESCAPES = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatchService]:
    service = PatchService(tmp_path_factory.mktemp("service"))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def hostile(service: PatchService) -> Iterator[HostileServer]:
    with serving(HostileServer(service.cert, service.key)) as server:
        yield server


def limited(rt: Runtime) -> Runtime:
    """The production runtime's HTTP clients with LIMITS (short deadlines for tests)."""

    def service(config: Config) -> HttpServiceClient:
        return HttpServiceClient(
            config.remote_server,
            ca_bundle=wiring.ca_bundle(config, rt.paths),
            proxies=config.proxies(),
            limits=LIMITS,
        )

    def metadata(config: Config, paths: Paths, credential: Credential) -> TufMetadata:
        return TufMetadata(
            config.remote_server,
            paths=paths,
            credential=credential,
            ca_bundle=wiring.ca_bundle(config, paths),
            proxies=config.proxies(),
            limits=LIMITS,
        )

    return replace(rt, service=service, metadata=metadata)


@pytest.fixture
def enrolled(tmp_path: Path, service: PatchService) -> Machine:
    m = machine(tmp_path, service)
    outcome = commands.enable(m.rt, service.token()).outcome
    assert outcome is not None and outcome.error is None
    assert m.state().patch_state is PatchState.KERNEL_UPGRADE_REQUIRED
    return replace(m, rt=limited(m.rt))


def point_at(m: Machine, server: HostileServer) -> None:
    commands.set_config(m.rt.paths, [f"remote-server={server.url}"])


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `call` in a thread; its result (or exception) lands in the list."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as error:
            result.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """`call()`'s result; fails (without hanging) if it takes longer than `seconds`."""
    thread, result = in_thread(call)
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_a_dripping_service_is_given_up_on_within_the_deadline(enrolled, hostile):
    hostile.on("GET", "/v1/metadata/", lambda h, r: h.drip(0.5))
    point_at(enrolled, hostile)
    started = time.monotonic()
    outcome = within(DEADLINE + 20, enrolled.check().run)
    elapsed = time.monotonic() - started
    assert DEADLINE - 0.1 <= elapsed < DEADLINE + 5, elapsed
    assert outcome.error is not None and outcome.error.code == "service-unreachable"
    [error] = enrolled.state().errors
    assert error.message == (
        f"Cannot reach the patch service at {hostile.url} (the transfer did not finish "
        "within 4 seconds); check the network, the proxy settings and remote-server."
    )


def test_config_disable_and_enable_work_while_a_check_in_is_stuck(enrolled, hostile, service):
    hostile.on("GET", "/v1/metadata/", lambda h, r: h.drip(0.5))
    hostile.on("DELETE", "/v1/machines/", lambda h, r: h.send_json(204, {}))
    point_at(enrolled, hostile)
    first = enrolled.state().enrolment
    stuck, outcome = in_thread(CheckIn(enrolled.rt).run)
    hostile.wait_for("/v1/metadata/")

    shown = within(2, lambda: commands.set_config(enrolled.rt.paths, ["check-interval=30"]))
    assert "check-interval: 30" in shown
    assert "check-interval: 30" in within(2, lambda: commands.show_config(enrolled.rt.paths).text)
    disabled = within(2, lambda: commands.disable(enrolled.rt, unload=False))
    assert disabled.service_error is None
    assert [r.method for r in hostile.requests if r.method == "DELETE"] == ["DELETE"]
    assert enrolled.state().enrolment is None
    assert stuck.is_alive()  # all of that while the check-in was still stuck

    commands.set_config(enrolled.rt.paths, [f"remote-server={service.url}"])
    enabling, enabled = in_thread(lambda: commands.enable(enrolled.rt, service.token()))
    deadline = time.monotonic() + 10
    while enrolled.state().enrolment in (None, first):  # enrolled anew, not held up
        assert time.monotonic() < deadline, "enable did not enrol while the check-in was stuck"
        time.sleep(0.02)
    assert stuck.is_alive()
    second = enrolled.state().enrolment

    stuck.join(DEADLINE + 10)
    enabling.join(30)
    assert not stuck.is_alive() and not enabling.is_alive()
    # The stuck check-in found its enrolment gone and left the new one alone.
    assert isinstance(outcome[0], Outcome) and outcome[0].error is None
    assert not isinstance(enabled[0], BaseException), enabled[0]
    final = enrolled.state()
    assert final.enrolment == second
    assert final.errors == ()
    assert final.patch_state is PatchState.KERNEL_UPGRADE_REQUIRED  # enable's own check ran
    assert CredentialFile(enrolled.rt.paths.credential).load() is not None


def renewal_due(m: Machine) -> Callable[[], datetime]:
    """A clock at which the credential is due for renewal (so the check-in calls renew)."""
    credential = CredentialFile(m.rt.paths.credential).load()
    assert credential is not None
    later = credential.expires - timedelta(days=5)
    return lambda: later


def test_escape_sequences_reach_neither_state_nor_status_nor_login_message(enrolled, hostile):
    code = "\x1b]0;owned\x07\u202e" + "E" * 5005
    message = "\x1b[2J\x1b[1;31mCall +1-555-0100 now\x9b0m \u2066hidden\u2069\n" + "m" * 3000
    body = {"error": {"code": code, "message": message}}
    hostile.on("POST", "/v1/machines/", lambda h, r: h.send_json(500, body))
    point_at(enrolled, hostile)
    clock = renewal_due(enrolled)
    outcome = enrolled.check(clock=clock).run()
    assert outcome.error is not None
    [error] = enrolled.state().errors
    assert error.code == "]0;owned" + "E" * 55 + "…"
    assert "[2J[1;31mCall +1-555-0100 now0m hidden mmm" in error.message
    assert len(error.message) < 500
    stored = enrolled.rt.paths.state.read_text()
    doc = commands.status(enrolled.rt)
    shown = [
        stored,
        json.dumps(doc, ensure_ascii=False),
        render.render_human(doc, verbose=True, colour=False, unicode=True),
        render.render_yaml(doc),
        motd.render(doc, clock()),
    ]
    for text in shown:
        assert not any(char in text for char in ESCAPES), repr(text[:200])
        assert "E" * 100 not in text and "m" * 400 not in text
    assert "[2J[1;31mCall +1-555-0100" in shown[2]


@pytest.mark.parametrize(
    ("header", "wait"),
    [("3600", 3600.0), ("999999999", 6 * 3600.0)],
    ids=["honoured", "capped"],
)
@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "forked"])
def test_the_daemon_waits_as_long_as_retry_after_asks_up_to_a_cap(
    enrolled, hostile, header, wait, isolate
):
    hostile.on(
        "POST",
        "/v1/machines/",
        lambda h, r: h.send_json(429, {"error": {}}, {"Retry-After": header}),
    )
    point_at(enrolled, hostile)
    clock = renewal_due(enrolled)
    rt = replace(enrolled.rt, clock=clock)
    outcome = asyncio.run(Daemon(rt, draw=lambda: 0.5, isolate=isolate).check())
    assert outcome.error is not None and outcome.error.code == "service-busy"
    state = StateFile(rt.paths.state).load()
    assert state.errors[0].code == "service-busy"
    assert state.next_check == clock() + timedelta(seconds=wait)
    assert [r.path.rsplit("/", 1)[-1] for r in hostile.requests] == ["renew"]  # no hammering
