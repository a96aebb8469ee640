from __future__ import annotations

import pytest

from livepatch.client.patches import version_key
from livepatch.client.planner import (
    Apply,
    KernelUpgradeRequired,
    NothingToApply,
    Remove,
    Revert,
    UpToDate,
    plan,
)
from livepatch.kernelsupport import Support
from livepatch.rollout import Tier, bucket
from tests.unit.client.fakes import KERNEL, patch


def decide(patches, *, loaded=(), machine="machine-a", tier=Tier.COMMUNITY, kernel=KERNEL):
    return plan(
        patches, kernel_key=kernel, machine_id=machine, tier=tier, loaded_modules=set(loaded)
    )


def test_no_patches_for_this_kernel_requires_an_upgrade():
    assert decide([]) == KernelUpgradeRequired(Support.UNSUPPORTED)
    # Patched kernels of the series: only a newer one means this one must be upgraded.
    assert decide([patch("3", kernel="6.1.0-57-amd64")]) == KernelUpgradeRequired(
        Support.KERNEL_UPGRADE_REQUIRED
    )
    assert decide([patch("3", kernel="6.1.0-55-amd64")]) == KernelUpgradeRequired(Support.SUPPORTED)


def test_another_kernels_patch_is_never_a_candidate_even_if_newer():
    mine, theirs = patch("3"), patch("9", kernel="6.1.0-57-amd64")
    assert decide([mine, theirs]) == Apply(mine)


def test_newest_admitted_cumulative_patch_is_applied():
    p3, p10, p4 = patch("3"), patch("10"), patch("4")
    assert decide([p3, p10, p4]) == Apply(p10)


def test_non_cumulative_patches_are_ignored():
    assert decide([patch("5", cumulative=False)]) == KernelUpgradeRequired(Support.UNSUPPORTED)
    p3 = patch("3")
    assert decide([p3, patch("5", cumulative=False)]) == Apply(p3)


def test_loaded_current_patch_is_up_to_date():
    p3 = patch("3")
    assert decide([p3], loaded=[p3.module_name]) == UpToDate(p3)


def test_newer_patch_replaces_the_loaded_one():
    p3, p4 = patch("3"), patch("4")
    assert decide([p3, p4], loaded=[p3.module_name]) == Apply(p4, replaces=p3)


def test_halted_patch_is_never_applied():
    assert decide([patch("3", halted=True)]) == NothingToApply()
    p3 = patch("3")
    assert decide([p3, patch("4", halted=True)]) == Apply(p3)


def test_halted_newer_patch_does_not_cause_downgrade_or_reload():
    p3, p4 = patch("3"), patch("4", halted=True)
    assert decide([p3, p4], loaded=[p4.module_name]) == UpToDate(p4)


def test_never_downgrades_when_an_older_patch_is_the_only_admitted_one():
    p3, p4 = patch("3"), patch("4", stage="canary", percentage=0.0)
    assert decide([p3, p4], loaded=[p4.module_name]) == UpToDate(p4)


def test_stable_tier_is_never_a_canary():
    p = patch("3", stage="canary", percentage=100.0)
    assert decide([p], tier=Tier.COMMUNITY) == Apply(p)
    assert decide([p], tier=Tier.STABLE) == NothingToApply()


@pytest.mark.parametrize("percentage", [0.0, 25.0, 50.0, 100.0])
def test_moderate_stage_admits_by_bucket(percentage):
    p = patch("3", stage="moderate", percentage=percentage)
    admitted = admitted_machines = 0
    for index in range(400):
        machine = f"machine-{index}"
        decision = decide([p], machine=machine)
        expected = bucket(machine, p.patch_id) < round(percentage * 100)
        assert isinstance(decision, Apply) == expected
        admitted += isinstance(decision, Apply)
        admitted_machines += 1
    assert abs(admitted / admitted_machines - percentage / 100) < 0.08


def test_not_admitted_yet_means_nothing_to_apply():
    assert decide([patch("3", stage="canary", percentage=0.0)]) == NothingToApply()


def test_version_ordering_is_numeric():
    assert version_key("10") > version_key("9")
    assert version_key("104.1") > version_key("104")
    assert version_key("2.10") > version_key("2.9")
    assert sorted(["1", "1.1", "10", "2"], key=version_key) == ["1", "1.1", "2", "10"]


def test_a_revoked_patch_is_never_a_candidate():
    p1, p2 = patch("1"), patch("2", revoked="oops in nfsd")
    assert decide([p1, p2]) == Apply(p1)
    assert decide([p2]) == NothingToApply()


def test_a_loaded_revoked_patch_is_replaced_by_the_newest_older_one():
    p1, p2, p3 = patch("1"), patch("2"), patch("3", revoked="oops")
    assert decide([p1, p2, p3], loaded=[p3.module_name]) == Revert(p2, revoked=p3)


def test_a_loaded_revoked_patch_without_a_replacement_is_removed():
    p1, p2 = patch("1", revoked="bad"), patch("2", revoked="bad too")
    assert decide([p1, p2], loaded=[p2.module_name]) == Remove(p2)


def test_revert_target_must_admit_this_machine():
    halted = patch("1", halted=True)
    revoked = patch("2", revoked="bad")
    assert decide([halted, revoked], loaded=[revoked.module_name]) == Remove(revoked)


def test_a_patch_that_crashed_this_machine_is_blocked():
    p1, p2 = patch("1"), patch("2")
    assert plan(
        [p1, p2],
        kernel_key=KERNEL,
        machine_id="machine-a",
        tier=Tier.COMMUNITY,
        loaded_modules=set(),
        blocked={p2.patch_id},
    ) == Apply(p1)
