"""Configuration defaults, config.toml and the policy's checks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from livepatch.server.config import Rate, RolloutPolicy, default_data_dir, load_config
from livepatch.server.errors import ConfigurationError


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.database_url == f"sqlite:///{tmp_path}/livepatch.db"
    assert config.policy == RolloutPolicy()
    assert config.policy.canary_soak == timedelta(hours=24)
    assert config.blob_dir == tmp_path / "blobs"


def test_data_dir_from_environment() -> None:
    assert default_data_dir({"LIVEPATCH_SERVER_DATA": "/srv/lp"}) == Path("/srv/lp")
    assert default_data_dir({}) == Path("/var/lib/livepatch-server")


def test_config_file_overrides_policy_and_database(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[server]\ndatabase = "postgresql+psycopg://u@h/db"\nengine_interval_seconds = 30\n'
        "[rollout]\ncanary_percentage = 1\ncanary_soak_hours = 2\nminimum_sample = 50\n"
    )
    config = load_config(tmp_path)
    assert config.database_url == "postgresql+psycopg://u@h/db"
    assert config.engine_interval == timedelta(seconds=30)
    assert config.policy.canary_percentage == 1.0
    assert config.policy.canary_soak == timedelta(hours=2)
    assert config.policy.minimum_sample == 50
    assert config.policy.moderate_percentage == 30.0


def test_command_line_database_wins(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[server]\ndatabase = "sqlite:////x.db"\n')
    assert load_config(tmp_path, "sqlite:////y.db").database_url == "sqlite:////y.db"


def test_blob_store_from_config_file_or_command_line(tmp_path: Path) -> None:
    assert load_config(tmp_path).blobs_url is None
    (tmp_path / "config.toml").write_text('[server]\nblobs = "s3://fleet/repo"\n')
    assert load_config(tmp_path).blobs_url == "s3://fleet/repo"
    assert load_config(tmp_path, blobs_url="s3://other").blobs_url == "s3://other"
    (tmp_path / "config.toml").write_text("[server]\nblobs = 3\n")
    with pytest.raises(ConfigurationError, match=r"server\.blobs must be a URL"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[rollout]\ncanary_percentage = 150\n", "between 0 and 100"),
        ("[rollout]\ncanary_percentage = 50\nmoderate_percentage = 10\n", "must not exceed"),
        ("[rollout]\ncanary_soak = 3\n", "Unknown rollout setting 'canary_soak'"),
        ("[rollout]\nfailure_threshold = 'x'\n", "not a number"),
        ("[rollout\n", "Cannot read"),
    ],
)
def test_bad_config_files_say_what_is_wrong(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigurationError, match=fragment):
        load_config(tmp_path)


def test_limits_and_evidence_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    limits = config.limits
    assert (limits.max_body_bytes, limits.max_header_bytes) == (1024 * 1024, 16 * 1024)
    assert limits.max_admin_body_bytes == 24 * 1024 * 1024
    assert (limits.header_timeout, limits.body_timeout) == (10.0, 30.0)
    assert (limits.enrol_per_address, limits.report_per_credential) == (
        Rate(5.0, 100),
        Rate(0.5, 20),
    )
    assert (limits.report_per_token_slot, limits.report_per_token_max) == (
        Rate(0.02, 10),
        Rate(100.0, 10_000),
    )
    assert (config.policy.minimum_applied, config.policy.minimum_tokens) == (5, 1)
    assert config.metrics_token is None


def test_limits_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[server]\nmetrics_token = "t"\n'
        "[rollout]\nminimum_applied = 2\nminimum_tokens = 3\n"
        "[limits]\nmax_body_bytes = 4096\nheader_timeout = 2.5\n"
        "enrol_per_token = {per_second = 1.5, burst = 7}\n"
    )
    config = load_config(tmp_path)
    assert config.limits.max_body_bytes == 4096
    assert config.limits.header_timeout == 2.5
    assert config.limits.enrol_per_token == Rate(1.5, 7)
    assert (config.policy.minimum_applied, config.policy.minimum_tokens) == (2, 3)
    assert config.metrics_token == "t"


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ("[limits]\nmax_body = 1\n", "Unknown limit 'max_body'"),
        ("[limits]\nmax_body_bytes = 0\n", "max_body_bytes must be at least 1"),
        ("[limits]\nenrol_per_token = 5\n", "enrol_per_token must be a table"),
        ("[limits]\nenrol_per_token = {per_second = 0, burst = 1}\n", "per_second > 0"),
        ("[rollout]\nminimum_tokens = 0\n", "minimum_tokens must be at least 1"),
        ('[server]\nmetrics_token = ""\n', "metrics_token must be a string"),
    ],
)
def test_invalid_limits_are_named(tmp_path: Path, table: str, match: str) -> None:
    (tmp_path / "config.toml").write_text(table)
    with pytest.raises(ConfigurationError, match=match):
        load_config(tmp_path)
