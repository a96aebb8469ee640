"""The optional `revoked` and `preflight` patch fields: parsed, validated, round-tripped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from livepatch.trust import patchmeta

BASE: dict[str, Any] = {
    "patch_id": "lp-6.1.0-56-amd64-2",
    "version": "2",
    "kernels": ["6.1.0-56-amd64"],
    "module_name": "livepatch_fix2",
    "cumulative": True,
    "severity": "high",
    "description": "",
    "cves": [],
    "rollout": {"stage": "canary", "percentage": "5.0", "halted": False},
}


def parse(**extra: Any) -> patchmeta.PatchTarget:
    fields = patchmeta.to_signed({**BASE, **extra})
    return patchmeta.parse_patch_fields("patches/x.ko", 1, {}, {"livepatch": fields})


def test_absent_fields_are_none() -> None:
    target = parse()
    assert target.revoked is None
    assert target.preflight is None


def test_revoked_round_trips_through_the_signed_form() -> None:
    at = datetime(2026, 12, 5, 4, 57, 22, 123456, tzinfo=UTC)
    revocation = patchmeta.Revocation("oops in nfsd", at)
    signed = revocation.to_fields()
    assert signed == {"reason": "oops in nfsd", "at": "2026-12-05T04:57:22Z"}
    target = parse(revoked=signed)
    assert target.revoked == patchmeta.Revocation("oops in nfsd", at.replace(microsecond=0))


def test_preflight_round_trips() -> None:
    at = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    preflight = patchmeta.Preflight(patchmeta.PreflightResult.SKIPPED, "6.1.0-56-amd64", at)
    assert parse(preflight=preflight.to_fields()).preflight == preflight


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"revoked": "yes"}, "revoked"),
        ({"revoked": {"reason": "x"}}, "revoked.at"),
        ({"revoked": {"reason": "x", "at": "2026-12-05T04:57:22"}}, "revoked.at"),
        ({"revoked": {"reason": "\x1b[2J", "at": "2026-12-05T04:57:22Z"}}, "revoked.reason"),
        ({"revoked": {"reason": "x" * 1025, "at": "2026-12-05T04:57:22Z"}}, "revoked.reason"),
        (
            {"preflight": {"result": "failed", "kernel": "k", "at": "2026-12-05T04:57:22Z"}},
            "preflight.result",
        ),
        (
            {"preflight": {"result": "passed", "kernel": "", "at": "2026-12-05T04:57:22Z"}},
            "preflight.kernel",
        ),
        ({"preflight": []}, "preflight"),
    ],
)
def test_invalid_values_are_named(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(patchmeta.InvalidPatchFields) as caught:
        parse(**extra)
    assert caught.value.field == field
