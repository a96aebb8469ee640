"""The signed target's revoked and preflight fields reach the planner's PatchInfo,
the revocation reason cleaned like the other text the service writes."""

from __future__ import annotations

from datetime import UTC, datetime

from livepatch.client.metadata import to_info
from livepatch.client.patches import Revocation
from livepatch.trust.patchmeta import (
    PatchTarget,
    Preflight,
    PreflightResult,
    Rollout,
)
from livepatch.trust.patchmeta import (
    Revocation as SignedRevocation,
)

AT = datetime(2026, 12, 5, 4, 57, 22, tzinfo=UTC)


def target(**fields: object) -> PatchTarget:
    base: dict[str, object] = {
        "name": "patches/lp-1.ko",
        "length": 10,
        "hashes": {"sha256": "00"},
        "patch_id": "lp-1",
        "version": "1",
        "kernels": ("6.1.0-56-amd64",),
        "module_name": "lp_1",
        "cumulative": True,
        "severity": "high",
        "description": "fix",
        "cves": (),
        "rollout": Rollout("all", 100.0, False),
        "custom": {},
    }
    return PatchTarget(**{**base, **fields})  # type: ignore[arg-type]


def test_a_revoked_target_is_revoked_for_the_planner_with_its_reason_cleaned() -> None:
    info = to_info(target(revoked=SignedRevocation("oops\x1b[31m in\u202e v2", AT)))
    assert info.revoked == Revocation("oops[31m in v2", "2026-12-05T04:57:22+00:00")


def test_the_preflight_result_is_carried() -> None:
    preflight = Preflight(PreflightResult.SKIPPED, "6.1.0-56-amd64", AT)
    assert to_info(target(preflight=preflight)).preflight == "skipped"


def test_a_plain_target_is_neither_revoked_nor_preflighted() -> None:
    info = to_info(target())
    assert info.revoked is None and info.preflight is None
