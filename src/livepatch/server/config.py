"""Where the service keeps its state and how it rolls patches out.

Everything has a default so that ``livepatch-server serve`` works with no
configuration: a data directory (``$LIVEPATCH_SERVER_DATA`` or
/var/lib/livepatch-server) holding the SQLite database, the blob directory,
the keys and an optional ``config.toml`` whose ``[rollout]`` table overrides
the rollout policy for this server.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from livepatch.server.errors import ConfigurationError

DEFAULT_DATA_DIR = Path("/var/lib/livepatch-server")
DATA_DIR_ENV = "LIVEPATCH_SERVER_DATA"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT_TLS = 8443
DEFAULT_PORT_PLAIN = 8080


@dataclass(frozen=True)
class RolloutPolicy:
    """Stage sizes, soak times and the halt rule; per server, overridable per patch."""

    canary_percentage: float = 5.0
    moderate_percentage: float = 30.0
    canary_soak: timedelta = timedelta(hours=24)
    moderate_soak: timedelta = timedelta(hours=48)
    failure_threshold: float = 0.02
    """Halt when failed / reports in the current stage exceeds this fraction…"""
    minimum_sample: int = 20
    """…over at least this many reports."""

    def __post_init__(self) -> None:
        for name in ("canary_percentage", "moderate_percentage"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ConfigurationError(f"{name} must be between 0 and 100, not {value}.")
        if self.canary_percentage > self.moderate_percentage:
            raise ConfigurationError(
                "canary_percentage must not exceed moderate_percentage "
                f"({self.canary_percentage} > {self.moderate_percentage})."
            )
        if self.canary_soak < timedelta(0) or self.moderate_soak < timedelta(0):
            raise ConfigurationError("Soak times must not be negative.")
        if not 0.0 <= self.failure_threshold <= 1.0:
            raise ConfigurationError(
                f"failure_threshold must be a fraction between 0 and 1, not "
                f"{self.failure_threshold}."
            )
        if self.minimum_sample < 1:
            raise ConfigurationError(
                f"minimum_sample must be at least 1, not {self.minimum_sample}."
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RolloutPolicy:
        """Build from a ``[rollout]`` table; soak times are given in hours."""
        known = {f.name for f in fields(cls)} - {"canary_soak", "moderate_soak"}
        known |= {"canary_soak_hours", "moderate_soak_hours"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown rollout setting {unknown[0]!r}: use one of {', '.join(sorted(known))}."
            )
        kwargs: dict[str, Any] = {}
        try:
            for name in ("canary_percentage", "moderate_percentage", "failure_threshold"):
                if name in values:
                    kwargs[name] = float(values[name])
            if "minimum_sample" in values:
                kwargs["minimum_sample"] = int(values["minimum_sample"])
            for stage in ("canary", "moderate"):
                if f"{stage}_soak_hours" in values:
                    kwargs[f"{stage}_soak"] = timedelta(hours=float(values[f"{stage}_soak_hours"]))
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"A rollout setting is not a number: {error}.") from error
        return cls(**kwargs)


@dataclass(frozen=True)
class ServerConfig:
    """Locations of the service's state and its policy."""

    data_dir: Path
    database_url: str
    policy: RolloutPolicy = field(default_factory=RolloutPolicy)
    timestamp_refresh: timedelta = timedelta(hours=1)
    """How often to ask for a timestamp re-sign (done once half its lifetime is gone)."""
    engine_interval: timedelta = timedelta(minutes=5)
    """How often the periodic task applies the rollout engine's decisions."""
    credential_lifetime: timedelta = timedelta(days=30)
    blobs_url: str | None = None
    """Where metadata and blobs are served from (see ``blobs.open_store``); None: blob_dir."""
    public_targets: bool = False
    """Serve modules to anyone; by default only to enrolled machines (metadata is public)."""

    @property
    def blob_dir(self) -> Path:
        """The local copy of metadata and blobs that signing works on."""
        return self.data_dir / "blobs"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def metrics_dir(self) -> Path:
        """Where the API workers of ``serve`` share their counters (emptied at its start)."""
        return self.data_dir / "metrics"

    @property
    def metadata_dir(self) -> Path:
        return self.blob_dir / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.blob_dir / "targets"

    def with_policy(self, policy: RolloutPolicy) -> ServerConfig:
        return replace(self, policy=policy)


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'livepatch.db'}"


def load_config(
    data_dir: Path | None = None,
    database_url: str | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    blobs_url: str | None = None,
    public_targets: bool | None = None,
) -> ServerConfig:
    """Resolve the data directory, database and blob store, and read ``config.toml``."""
    data_dir = (data_dir or default_data_dir(environ)).absolute()
    config_file = data_dir / "config.toml"
    table: dict[str, Any] = {}
    if config_file.exists():
        try:
            table = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigurationError(
                f"Cannot read {config_file}: {error}; fix or remove the file."
            ) from error
    server = table.get("server", {})
    rollout = table.get("rollout", {})
    if not isinstance(server, dict) or not isinstance(rollout, dict):
        raise ConfigurationError(f"{config_file}: [server] and [rollout] must be tables.")
    url = database_url or server.get("database") or sqlite_url(data_dir)
    if not isinstance(url, str):
        raise ConfigurationError(f"{config_file}: server.database must be a URL string.")
    blobs = blobs_url or server.get("blobs") or None
    if blobs is not None and not isinstance(blobs, str):
        raise ConfigurationError(f"{config_file}: server.blobs must be a URL string.")
    config = ServerConfig(
        data_dir=data_dir,
        database_url=url,
        policy=RolloutPolicy.from_mapping(rollout),
        blobs_url=blobs,
    )
    public = server.get("public_targets", False) if public_targets is None else public_targets
    if not isinstance(public, bool):
        raise ConfigurationError(f"{config_file}: server.public_targets must be true or false.")
    config = replace(config, public_targets=public)
    try:
        if "timestamp_refresh_hours" in server:
            hours = float(server["timestamp_refresh_hours"])
            config = replace(config, timestamp_refresh=timedelta(hours=hours))
        if "engine_interval_seconds" in server:
            seconds = float(server["engine_interval_seconds"])
            config = replace(config, engine_interval=timedelta(seconds=seconds))
        if "credential_lifetime_days" in server:
            days = float(server["credential_lifetime_days"])
            config = replace(config, credential_lifetime=timedelta(days=days))
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"{config_file}: a [server] setting is not a number.") from error
    return config
