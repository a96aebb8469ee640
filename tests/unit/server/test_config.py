"""Configuration defaults, config.toml and the policy's checks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from livepatch.server.config import RolloutPolicy, default_data_dir, load_config
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
