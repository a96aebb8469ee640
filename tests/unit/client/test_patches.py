from __future__ import annotations

import pytest

from livepatch.client.errors import MetadataRejected
from livepatch.client.patches import parse_patch
from livepatch.rollout import RolloutState, Stage

GOOD = {
    "livepatch": {
        "patch_id": "lp-6.1.0-56-amd64-3",
        "version": "3",
        "kernels": ["6.1.0-56-amd64"],
        "module_name": "livepatch_cve_2024_1086",
        "cumulative": True,
        "severity": "high",
        "description": "netfilter",
        "cves": [{"id": "CVE-2024-1086", "severity": "high", "description": "nf_tables"}],
        "rollout": {"stage": "canary", "percentage": 5.0, "halted": False},
    }
}


def test_parses_the_contract_example():
    info = parse_patch("patches/lp-6.1.0-56-amd64-3.ko", GOOD)
    assert info.patch_id == "lp-6.1.0-56-amd64-3"
    assert info.kernels == ("6.1.0-56-amd64",)
    assert info.cves[0].id == "CVE-2024-1086"
    assert info.rollout == RolloutState(Stage.CANARY, 5.0, False)


def _with(**changes):
    fields = dict(GOOD["livepatch"])
    fields.update(changes)
    return {"livepatch": fields}


@pytest.mark.parametrize(
    ("custom", "field"),
    [
        ({}, "rollout"),
        ({"livepatch": "x"}, "livepatch"),
        (_with(kernels="6.1"), "kernels"),
        (_with(kernels=[1]), "kernels"),
        (_with(patch_id=""), "patch_id"),
        (_with(version=3), "version"),
        (_with(cves=[1]), "cves"),
        (_with(rollout={"stage": "everyone", "percentage": 1}), "rollout.stage"),
        (_with(rollout={"stage": "all", "percentage": "10"}), "rollout.percentage"),
        (_with(rollout={"stage": "all", "percentage": True}), "rollout.percentage"),
        (_with(rollout={"stage": "all", "percentage": 1, "halted": "no"}), "rollout.halted"),
        (_with(cumulative="yes"), "cumulative"),
    ],
)
def test_malformed_fields_are_named(custom, field):
    with pytest.raises(MetadataRejected) as caught:
        parse_patch("patches/x.ko", custom)
    assert f"{field} must be" in str(caught.value)
