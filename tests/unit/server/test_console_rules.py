"""The console's pure rules: kernel support, machine states, roles, client versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from livepatch.client.planner import KernelUpgradeRequired, plan
from livepatch.kernelsupport import Support, machine_support, parse, series_support
from livepatch.rollout import Tier
from livepatch.server.admins import Role, allows, looks_like_key, new_key
from livepatch.server.fleet import MachineState, machine_states
from livepatch.server.machines import client_version
from tests.unit.client.fakes import patch

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LIVE = {"6.1.0-56-amd64", "5.15.0-91-generic"}


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [
        ("6.1.0-56-amd64", Support.SUPPORTED),
        ("6.1.0-40-amd64", Support.KERNEL_UPGRADE_REQUIRED),
        ("6.1.0-55-amd64", Support.KERNEL_UPGRADE_REQUIRED),
        ("6.1.0-60-amd64", Support.SUPPORTED),
        ("6.1.0-56-cloud-amd64", Support.UNSUPPORTED),
        ("6.6.0-1-amd64", Support.UNSUPPORTED),
        ("5.15.0-88-generic", Support.KERNEL_UPGRADE_REQUIRED),
        ("custom", Support.UNKNOWN),
    ],
)
def test_machine_support(kernel: str, expected: Support) -> None:
    assert machine_support(kernel, live=LIVE, end_of_life={}, now=NOW) == expected


def test_an_end_of_life_counts_from_its_date() -> None:
    eol = {"6.1.0-56-amd64": datetime(2026, 5, 31, tzinfo=UTC)}
    assert machine_support("6.1.0-56-amd64", live=LIVE, end_of_life=eol, now=NOW) == (
        Support.KERNEL_END_OF_LIFE
    )
    later = {"6.1.0-56-amd64": datetime(2026, 6, 2, tzinfo=UTC)}
    assert machine_support("6.1.0-56-amd64", live=LIVE, end_of_life=later, now=NOW) == (
        Support.SUPPORTED
    )


@pytest.mark.parametrize(
    ("version", "flavour", "eol", "expected"),
    [
        ("6.1", "amd64", {}, Support.SUPPORTED),
        ("5.15", "generic", {}, Support.SUPPORTED),
        ("5.15", "lowlatency", {}, Support.UNSUPPORTED),
        ("6.6", "amd64", {}, Support.UNSUPPORTED),
        ("six", "amd64", {}, Support.UNKNOWN),
        ("6.1.0", "amd64", {}, Support.UNKNOWN),
        ("6.1", "amd64", {"6.1.0-56-amd64": NOW}, Support.KERNEL_END_OF_LIFE),
    ],
)
def test_series_support_answers_ubuntu_pros_question(
    version: str, flavour: str, eol: dict[str, datetime], expected: Support
) -> None:
    assert series_support(version, flavour, live=LIVE, end_of_life=eol, now=NOW) == expected


def test_kernel_keys_parse_into_series_abi_and_flavour() -> None:
    key = parse("6.1.0-56-cloud-amd64")
    assert key is not None
    assert (key.series, key.abi, key.flavour) == ((6, 1), 56, "cloud-amd64")
    assert parse("5.15.0-91.101-generic") is not None
    assert parse("6.1.0-56") is None


def test_machine_states_name_everything_wrong_in_order() -> None:
    assert machine_states(
        last_result="failed",
        health="unhealthy",
        support=Support.KERNEL_END_OF_LIFE,
        last_seen=NOW - timedelta(days=3),
        now=NOW,
    ) == [
        MachineState.APPLY_FAILED,
        MachineState.UNHEALTHY,
        MachineState.KERNEL_UPGRADE_REQUIRED,
        MachineState.STALE,
    ]
    assert machine_states(
        last_result="crashed", health=None, support=Support.SUPPORTED, last_seen=NOW, now=NOW
    ) == [MachineState.CRASHED]
    assert (
        machine_states(
            last_result="applied",
            health="healthy",
            support=Support.SUPPORTED,
            last_seen=NOW - timedelta(days=2),
            now=NOW,
        )
        == []
    )


def test_roles_are_ordered() -> None:
    assert allows(Role.ADMIN, Role.OPERATOR) and allows(Role.OPERATOR, Role.OPERATOR)
    assert not allows(Role.VIEWER, Role.OPERATOR) and not allows(Role.OPERATOR, Role.ADMIN)


def test_admin_keys_have_256_bits_and_a_prefix() -> None:
    key = new_key()
    assert key.startswith("lpadm_") and len(key) == 6 + 43 and looks_like_key(key)
    assert new_key() != key
    assert not looks_like_key(key + "x") and not looks_like_key("lpadm_short")


@pytest.mark.parametrize(
    ("agent", "version"),
    [
        ("livepatch/1.4.2", "1.4.2"),
        ("livepatch/0.1.dev3+g1234 python-requests/2.31", "0.1.dev3+g1234"),
        ("python-requests/2.31", None),
        ("livepatch/", None),
        (None, None),
    ],
)
def test_client_version_from_the_user_agent(agent: str | None, version: str | None) -> None:
    assert client_version(agent) == version


@pytest.mark.parametrize("kernel", ["6.1.0-40-amd64", "6.1.0-60-amd64", "6.6.0-1-amd64", "x"])
def test_the_clients_supported_field_agrees_with_the_service(kernel: str) -> None:
    published = [patch("3", kernel="6.1.0-56-amd64")]
    decided = plan(
        published, kernel_key=kernel, machine_id="m", tier=Tier.STABLE, loaded_modules=()
    )
    assert isinstance(decided, KernelUpgradeRequired)
    service = machine_support(kernel, live={"6.1.0-56-amd64"}, end_of_life={}, now=NOW)
    assert decided.support == service
