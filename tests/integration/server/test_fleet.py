"""Fleet views over the database with a hand-moved clock (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from livepatch.rollout import Tier
from livepatch.server import fleet, machines, operations, tokens
from livepatch.server.audit import Actor
from livepatch.server.service import Service
from tests.integration.server.conftest import Clock

ACTOR = Actor("tester", "cli")


def enrol(service: Service, secret: str, machine_id: str, kernel: str) -> None:
    with service.transaction() as session:
        machines.enrol(
            session,
            secret,
            machines.MachineFacts(machine_id, f"{machine_id}.example", kernel, "amd64", "1.0"),
            now=service.clock(),
            lifetime=timedelta(days=30),
        )


def test_a_silent_machine_becomes_stale_after_two_days(service: Service, clock: Clock) -> None:
    with service.transaction() as session:
        secret = tokens.create_token(session, tier=Tier.STABLE, machines=5, now=clock()).secret
    enrol(service, secret, "quiet", "6.1.0-56-amd64")
    clock.advance(days=1)
    enrol(service, secret, "chatty", "6.1.0-56-amd64")
    clock.advance(days=1, seconds=1)
    stale = operations.list_machines(service, fleet.Filters(state=fleet.MachineState.STALE))
    assert [m["machine_id"] for m in stale["items"]] == ["quiet"]
    assert stale["next"] is None
    shown = operations.show_machine(service, "quiet")
    assert shown["client_version"] == "1.0"
    assert shown["first_seen"] == shown["last_check_in"]
    assert shown["states"] == ["stale"]
    assert shown["supported"] == "unsupported"  # nothing is published for 6.1 amd64
    assert shown["history"] == []


def test_an_end_of_life_is_audited_and_shown(service: Service, clock: Clock) -> None:
    with service.transaction() as session:
        secret = tokens.create_token(session, tier=Tier.STABLE, machines=5, now=clock()).secret
    enrol(service, secret, "old", "6.1.0-50-amd64")
    operations.set_end_of_life(service, ACTOR, "6.1.0-50-amd64", clock() + timedelta(days=1))
    assert operations.show_machine(service, "old")["supported"] == "unsupported"
    clock.advance(days=1)
    shown = operations.show_machine(service, "old")
    assert shown["supported"] == "kernel-end-of-life"
    assert "kernel-upgrade-required" in shown["states"]
    entry = operations.audit_log(service, limit=1)["items"][0]
    assert (entry["actor"], entry["source"], entry["action"], entry["target"]) == (
        "tester",
        "cli",
        "kernel.end-of-life",
        "6.1.0-50-amd64",
    )
