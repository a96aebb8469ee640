"""Pure helpers of the catalogue and the API: module names, per-patch policy, messages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.exceptions import RequestValidationError

from livepatch.server.api.errors import validation_message
from livepatch.server.config import RolloutPolicy
from livepatch.server.errors import ConfigurationError, InvalidRequest
from livepatch.server.patches import effective_policy, module_name


def test_module_name_comes_from_modinfo() -> None:
    module = b"\x7fELF" + b"\0" * 20 + b"\0author=x\0name=livepatch_cve_1\0vermagic=6.1\0"
    assert module_name(module) == "livepatch_cve_1"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not a kernel module"),
        (b"MZ\0name=x\0", "not a kernel module"),
        (b"\x7fELF\0\0license=GPL\0", "no name"),
    ],
)
def test_non_modules_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        module_name(data)


def test_per_patch_overrides_replace_the_server_policy() -> None:
    policy = effective_policy(
        RolloutPolicy(), {"canary_percentage": 1.0, "moderate_soak_hours": 6.0}
    )
    assert policy.canary_percentage == 1.0
    assert policy.moderate_soak == timedelta(hours=6)
    assert policy.moderate_percentage == 30.0


def test_per_patch_overrides_are_checked_like_the_server_policy() -> None:
    with pytest.raises(ConfigurationError, match="must not exceed"):
        effective_policy(RolloutPolicy(), {"canary_percentage": 50.0})


def test_validation_messages_name_the_field_in_one_sentence() -> None:
    error = RequestValidationError(
        [{"loc": ("body", "machine_id"), "msg": "String should match pattern", "type": "x"}]
    )
    assert validation_message(error) == "Field 'machine_id': string should match pattern."
    bad_json = RequestValidationError([{"loc": ("body", 1), "msg": "x", "type": "json_invalid"}])
    assert "not valid JSON" in validation_message(bad_json)
