"""Machine and audit-log listings a page at a time, filtered in SQL (SQLite and PostgreSQL).

The fleet is a fixed table: machine ``m{i:03}``'s kernel, token, architecture,
check-in and reports follow from ``i`` by the rules in `machine_row` and
`report_rows`, and each expected set below is written from those rules, not
from the code under test. Record ``m049`` exists twice (a duplicate
enrolment) and the two records fall on either side of a page boundary.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from livepatch.rollout import Tier
from livepatch.server import audit, fleet, operations, tokens
from livepatch.server.audit import Actor
from livepatch.server.config import load_config
from livepatch.server.errors import InvalidRequest
from livepatch.server.service import Service
from livepatch.server.storage.models import KernelLifecycle, Machine, Patch, Report
from tests.integration.server.live import LiveServer, live_server

COUNT = 230
PAGE = 50
TWICE = 49
"""The machine enrolled twice: records 49 and 50 in listing order, split by the first page."""
KERNELS = ("6.1.0-50-amd64", "6.1.0-56-amd64", "6.1.0-60-amd64", "5.15.0-91-generic")
OLD_ABI = "6.1.0-9-amd64"
"""Older than the patched 6.1.0-56 numerically, newer as a string: upgrade required."""
PATCH, OLD_PATCH = "lp-6.1.0-56-amd64-1", "lp-6.1.0-56-amd64-0"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/livepatch.db"
    return str(request.getfixturevalue("postgres").create_database())


def kernel_of(i: int) -> str:
    return OLD_ABI if i % 5 == 4 else KERNELS[i % 5]


def machine_row(i: int, token_ids: tuple[int, int], now: datetime, *, copy: bool) -> Machine:
    name = f"m{i:03}"
    last_seen = now
    if i % 11 == 0:
        last_seen = now - timedelta(days=3)  # stale
    elif i % 11 == 1:
        last_seen = now - timedelta(days=2)  # exactly two days: not yet stale
    return Machine(
        machine_id=name,
        token_id=token_ids[i % 2],
        tier="community",
        hostname=f"{name}.example",
        kernel=kernel_of(i),
        architecture="arm64" if i % 3 == 0 else "amd64",
        credential_digest=hashlib.sha256(f"{name}/{copy}".encode()).hexdigest(),
        credential_expires=now + timedelta(days=30),
        enrolled=now - timedelta(days=10),
        last_seen=last_seen,
        duplicate=copy,
        client_version="1.0",
    )


def report(i: int, patch: str, stage: str, result: str, at: datetime, **extra: Any) -> Report:
    return Report(
        machine_id=f"m{i:03}",
        patch_id=patch,
        stage=stage,
        kernel=kernel_of(i),
        result=result,
        duration_ms=5,
        taint=0,
        received=at,
        **extra,
    )


def report_rows(i: int, now: datetime) -> list[Report]:
    """By i % 7: applied; failed; applied then crashed; applied but unhealthy; failed then
    applied at the same second (the later row wins); the old patch applied then the new one
    failed; no report."""
    t0, t1 = now - timedelta(hours=2), now - timedelta(hours=1)
    kind = i % 7
    if kind == 0:
        return [report(i, PATCH, "canary", "applied", t0)]
    if kind == 1:
        return [report(i, PATCH, "canary", "failed", t0, reason="transition timed out")]
    if kind == 2:
        return [
            report(i, PATCH, "canary", "applied", t0),
            report(i, PATCH, "moderate", "crashed", t1),
        ]
    if kind == 3:
        return [report(i, PATCH, "canary", "applied", t0, health="unhealthy")]
    if kind == 4:
        return [
            report(i, PATCH, "canary", "failed", t1),
            report(i, PATCH, "moderate", "applied", t1),
        ]
    if kind == 5:
        return [
            report(i, OLD_PATCH, "all", "applied", t0),
            report(i, PATCH, "canary", "failed", t1),
        ]
    return []


def patch_row(patch_id: str, kernel: str, now: datetime, *, withdrawn: bool) -> Patch:
    return Patch(
        patch_id=patch_id,
        kernel_set=kernel,
        version=int(patch_id[-1]) + 1,
        kernels=[kernel],
        module_name="livepatch_x",
        target_name=f"{kernel}/{patch_id}.ko",
        sha256="0" * 64,
        length=1,
        severity="high",
        description="a fix",
        cves=[],
        stage="all",
        percentage=100.0,
        halted=False,
        withdrawn=withdrawn,
        stage_started=now,
        created=now,
        policy={},
    )


def seed(service: Service) -> int:
    """The fixed fleet; returns the first token's id."""
    now = service.clock()
    with service.transaction() as session:
        first = tokens.create_token(session, tier=Tier.COMMUNITY, machines=1000, now=now)
        second = tokens.create_token(session, tier=Tier.COMMUNITY, machines=1000, now=now)
        token_ids = (first.info.id, second.info.id)
        session.add_all(
            [
                patch_row(PATCH, "6.1.0-56-amd64", now, withdrawn=False),
                patch_row(OLD_PATCH, "6.1.0-56-amd64", now, withdrawn=False),
                # Withdrawn: it does not make 6.1.0-60 need an upgrade.
                patch_row("lp-6.1.0-70-amd64-1", "6.1.0-70-amd64", now, withdrawn=True),
                patch_row("lp-5.15.0-91-generic-1", "5.15.0-91-generic", now, withdrawn=False),
                KernelLifecycle(kernel="5.15.0-91-generic", end_of_life=now - timedelta(days=1)),
            ]
        )
        # Insertion order is not listing order: ids must not decide it.
        for i in reversed(range(COUNT)):
            session.add(machine_row(i, token_ids, now, copy=False))
            session.add_all(report_rows(i, now))
        session.flush()
        session.add(machine_row(TWICE, token_ids, now, copy=True))
    return token_ids[0]


def records(rule: Any) -> list[tuple[str, bool]]:
    """The expected records, (machine_id, duplicate), in listing order."""
    found = []
    for i in range(COUNT):
        if rule(i):
            found.append((f"m{i:03}", False))
            if i == TWICE:
                found.append((f"m{i:03}", True))
    return found


def walk(service: Service, filters: fleet.Filters, limit: int) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []
    after = None
    for _ in range(COUNT + 2):
        page = operations.list_machines(service, filters, limit=limit, after=after)
        assert len(page["items"]) <= limit
        seen += [(m["machine_id"], m["duplicate"]) for m in page["items"]]
        after = page["next"]
        if after is None:
            return seen
        assert len(page["items"]) == limit  # only the last page is short
    raise AssertionError("the pages did not end")


@pytest.fixture
def fleet_service(service: Service) -> tuple[Service, int]:
    return service, seed(service)


def test_every_machine_appears_exactly_once_across_pages(
    fleet_service: tuple[Service, int],
) -> None:
    service, _token = fleet_service
    everyone = records(lambda i: True)
    assert len(everyone) == COUNT + 1
    first = operations.list_machines(service, fleet.Filters(), limit=PAGE)
    # The two records of m049 straddle the first page's end.
    assert first["items"][-1]["machine_id"] == "m049"
    assert first["items"][-1]["duplicate"] is False
    assert walk(service, fleet.Filters(), PAGE) == everyone
    assert walk(service, fleet.Filters(), 1000) == everyone
    assert walk(service, fleet.Filters(), 7) == everyone


EXPECTED = [
    # (filters, the rule the fixture follows)
    (fleet.Filters(state=fleet.MachineState.APPLY_FAILED), lambda i: i % 7 in (1, 5)),
    (fleet.Filters(state=fleet.MachineState.CRASHED), lambda i: i % 7 == 2),
    (fleet.Filters(state=fleet.MachineState.UNHEALTHY), lambda i: i % 7 == 3),
    (fleet.Filters(state=fleet.MachineState.STALE), lambda i: i % 11 == 0),
    (
        fleet.Filters(state=fleet.MachineState.KERNEL_UPGRADE_REQUIRED),
        lambda i: i % 5 in (0, 3, 4),
    ),
    (fleet.Filters(kernel="6.1.0-56-amd64"), lambda i: i % 5 == 1),
    (fleet.Filters(kernel="6.1.0-99-amd64"), lambda i: False),
    (fleet.Filters(patch=PATCH), lambda i: i % 7 != 6),
    (fleet.Filters(patch=OLD_PATCH), lambda i: i % 7 == 5),
    (fleet.Filters(architecture="arm64"), lambda i: i % 3 == 0),
    (
        fleet.Filters(state=fleet.MachineState.APPLY_FAILED, kernel=OLD_ABI),
        lambda i: i % 7 in (1, 5) and i % 5 == 4,
    ),
    (
        fleet.Filters(state=fleet.MachineState.STALE, patch=PATCH, architecture="amd64"),
        lambda i: i % 11 == 0 and i % 7 != 6 and i % 3 != 0,
    ),
]


@pytest.mark.parametrize(("filters", "rule"), EXPECTED)
def test_filters_return_the_fixture_s_set_page_by_page(
    fleet_service: tuple[Service, int], filters: fleet.Filters, rule: Any
) -> None:
    service, _token = fleet_service
    assert walk(service, filters, 20) == records(rule)


def test_filter_by_token(fleet_service: tuple[Service, int]) -> None:
    service, token = fleet_service
    assert walk(service, fleet.Filters(token=token), PAGE) == records(lambda i: i % 2 == 0)


def test_a_handful_of_machines_by_name(fleet_service: tuple[Service, int]) -> None:
    """A few rows spelled out, against a mistake shared by the rules and the code."""
    service, _token = fleet_service
    failed = walk(service, fleet.Filters(state=fleet.MachineState.APPLY_FAILED), PAGE)
    assert [name for name, _ in failed][:6] == ["m001", "m005", "m008", "m012", "m015", "m019"]
    crashed = operations.list_machines(
        service, fleet.Filters(state=fleet.MachineState.CRASHED), limit=3
    )
    shown = [(m["machine_id"], m["patch_loaded"], m["states"]) for m in crashed["items"]]
    assert shown == [
        ("m002", PATCH, ["crashed"]),
        ("m009", PATCH, ["crashed", "kernel-upgrade-required"]),
        ("m016", PATCH, ["crashed"]),
    ]
    assert crashed["next"] == f"{crashed_row_id(service, 'm016')}:m016"


def crashed_row_id(service: Service, machine_id: str) -> int:
    with service.transaction(readonly=True) as session:
        machine = session.query(Machine).filter_by(machine_id=machine_id).one()
        return machine.id


def test_pages_stay_put_while_machines_come_and_go(fleet_service: tuple[Service, int]) -> None:
    """Keyset, not offset: a machine enrolled before the cursor, or one removed, shifts nothing."""
    service, token = fleet_service
    first = operations.list_machines(service, fleet.Filters(), limit=PAGE)
    with service.transaction() as session:
        session.delete(session.query(Machine).filter_by(machine_id="m010").one())
        session.delete(session.query(Machine).filter_by(machine_id="m120").one())
        for name in ("m000a", "m120a"):
            row = machine_row(7, (token, token), service.clock(), copy=False)
            row.machine_id, row.credential_digest = name, hashlib.sha256(name.encode()).hexdigest()
            session.add(row)
    rest: list[tuple[str, bool]] = []
    after = first["next"]
    while after is not None:
        page = operations.list_machines(service, fleet.Filters(), limit=PAGE, after=after)
        rest += [(m["machine_id"], m["duplicate"]) for m in page["items"]]
        after = page["next"]
    seen = [(m["machine_id"], m["duplicate"]) for m in first["items"]] + rest
    expected = [r for r in records(lambda i: True) if r[0] != "m120"]
    expected.insert(expected.index(("m121", False)), ("m120a", False))
    assert seen == expected  # m010 was already shown; m000a came before the cursor


@pytest.mark.parametrize("cursor", ["", "abc", "12", "1:", ":m001", "99999999999:m1", "1:-m"])
def test_a_cursor_not_made_by_the_service_is_refused(
    fleet_service: tuple[Service, int], cursor: str
) -> None:
    service, _token = fleet_service
    with pytest.raises(InvalidRequest, match="not a page cursor"):
        operations.list_machines(service, fleet.Filters(), after=cursor)


def test_the_audit_log_pages_newest_first(service: Service) -> None:
    now = service.clock()
    with service.transaction() as session:
        for n in range(123):
            audit.record(session, Actor("pager", "cli"), "test.entry", f"t{n}", now=now)
    seen: list[str] = []
    after = None
    while True:
        page = operations.audit_log(service, limit=50, after=after)
        seen += [e["target"] for e in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [f"t{n}" for n in reversed(range(123))]
    newest = operations.audit_log(service, limit=23)
    assert len(newest["items"]) == 23 and newest["next"] is not None
    exact = operations.audit_log(service, limit=123)
    assert len(exact["items"]) == 123 and exact["next"] is None
    with pytest.raises(InvalidRequest, match="not a page cursor"):
        operations.audit_log(service, limit=5, after="0")


# Through the API, the command and the dashboard, against `livepatch-server serve`.


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("pages") / "data"
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir}/livepatch.db"
    else:
        url = request.getfixturevalue("postgres").create_database()
    with live_server(data_dir, url) as server:
        # An hour ahead: the machines two days silent stay on the near side of stale
        # for the server's real clock while the test runs.
        ahead = datetime.now(UTC) + timedelta(hours=1)
        seeding = Service(load_config(data_dir, url), clock=lambda: ahead)
        try:
            seed(seeding)
        finally:
            seeding.close()
        yield server


def test_the_api_the_command_and_the_dashboard_page_through_the_fleet(live: LiveServer) -> None:
    key = live.admin_json("admins", "create", "pager", "--role", "viewer")["key"]
    viewer = live.client(headers={"X-Admin-Key": key})
    seen: list[tuple[str, bool]] = []
    params: dict[str, Any] = {"limit": 40, "state": "kernel-upgrade-required"}
    while True:
        response = viewer.get("/v1/admin/machines", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [(m["machine_id"], m["duplicate"]) for m in body["items"]]
        if body["next"] is None:
            break
        params["after"] = body["next"]
    assert seen == records(lambda i: i % 5 in (0, 3, 4))
    for bad in ({"limit": 0}, {"limit": 1001}, {"after": "nope"}, {"token": 0}):
        assert viewer.get("/v1/admin/machines", params=bad).status_code == 422, bad

    # The command follows the pages (1000 at a time) and --limit caps them.
    listed = live.admin_json("machines", "list")
    assert [(m["machine_id"], m["duplicate"]) for m in listed] == records(lambda i: True)
    capped = live.admin_json("machines", "list", "--state", "apply-failed", "--limit", "3")
    assert [m["machine_id"] for m in capped] == ["m001", "m005", "m008"]
    table = live.admin("machines", "list", "--kernel", OLD_ABI, "--architecture", "arm64")
    assert re.findall(r"^m\d{3}", table, re.MULTILINE) == [
        f"m{i:03}" for i in range(COUNT) if i % 5 == 4 and i % 3 == 0
    ]

    # The dashboard's table: 100 a page, a link to the next page keeping the filter.
    client = live.client(follow_redirects=False)
    assert client.post("/ui/login", data={"key": key}).status_code == 303
    names: list[str] = []
    url: str | None = "/ui/machines?state=stale"
    pages = 0
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200, page.text[:300]
        assert len(page.content) < 64 * 1024
        names += re.findall(r'<a href="/ui/machines/(m\d{3})">', page.text)
        found = re.search(r'<a href="([^"]+)" rel=next>', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
        pages += 1
    assert names == [f"m{i:03}" for i in range(COUNT) if i % 11 == 0]
    assert pages == 1
    names, url, pages = [], "/ui/machines", 0
    while url is not None:
        page = client.get(url)
        names += re.findall(r'<a href="/ui/machines/(m\d{3})">', page.text)
        if pages:
            assert "rel=first>First page</a>" in page.text
        found = re.search(r'<a href="([^"]+)" rel=next>', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
        pages += 1
    assert pages == 3
    assert names == [name for name, _ in records(lambda i: True)]
