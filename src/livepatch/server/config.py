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
    minimum_applied: int = 5
    """A stage promotes only after this many of its machines reported a healthy apply."""
    minimum_tokens: int = 1
    """Healthy reports (to promote) and failures (to halt) must come from this many
    distinct tokens; raise it when tokens belong to parties that do not trust each other."""

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
        if self.minimum_applied < 0:
            raise ConfigurationError(
                f"minimum_applied must not be negative, not {self.minimum_applied}."
            )
        if self.minimum_tokens < 1:
            raise ConfigurationError(
                f"minimum_tokens must be at least 1, not {self.minimum_tokens}."
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
            for name in ("minimum_sample", "minimum_applied", "minimum_tokens"):
                if name in values:
                    kwargs[name] = int(values[name])
            for stage in ("canary", "moderate"):
                if f"{stage}_soak_hours" in values:
                    kwargs[f"{stage}_soak"] = timedelta(hours=float(values[f"{stage}_soak_hours"]))
        except (TypeError, ValueError) as error:
            raise ConfigurationError(f"A rollout setting is not a number: {error}.") from error
        return cls(**kwargs)


@dataclass(frozen=True)
class Rate:
    """A token bucket: `per_second` sustained, `burst` at once."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ConfigurationError(
                f"A rate needs per_second > 0 and burst >= 1, not {self.per_second}/{self.burst}."
            )


@dataclass(frozen=True)
class Limits:
    """Size, time, connection and rate limits of the HTTP service (``[limits]``).

    Rates are per worker process: with N workers a client may get up to N
    times as much through before it sees 429.
    """

    max_body_bytes: int = 1024 * 1024
    """Larger request bodies get 413 before they are read."""
    max_admin_body_bytes: int = 24 * 1024 * 1024
    """The same for the admin API (``/v1/admin/…``): a published module (up to 16 MiB)
    travels base64-encoded in JSON."""
    max_header_bytes: int = 16 * 1024
    """Request line and headers together; more gets 431."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's line and headers (slow-loris)."""
    body_timeout: float = 30.0
    """Seconds a request may take to send its whole body once its headers are in."""
    keep_alive_timeout: int = 5
    """Seconds an idle keep-alive connection stays open."""
    max_connections: int = 1000
    """Concurrent connections per worker; more get 503."""
    max_connections_per_address: int = 256
    """Concurrent connections per client address per worker; more are closed at once."""
    enrol_per_address: Rate = Rate(5.0, 100)
    enrol_per_token: Rate = Rate(5.0, 200)
    report_per_credential: Rate = Rate(0.5, 20)
    report_per_address: Rate = Rate(50.0, 500)
    report_per_token_slot: Rate = Rate(0.02, 10)
    """Reports of all the machines of one token: this times the token's machine limit…"""
    report_per_token_max: Rate = Rate(100.0, 10_000)
    """…at most this (``buckets.token_rate``)."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Limits:
        """From a ``[limits]`` table; a rate is ``{per_second = 2.0, burst = 60}``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown limit {unknown[0]!r}: use one of {', '.join(sorted(known))}."
            )
        kwargs: dict[str, Any] = {}
        try:
            for item in fields(cls):
                if item.name not in values:
                    continue
                value = values[item.name]
                default = getattr(cls, item.name)
                if isinstance(default, Rate):
                    if not isinstance(value, dict):
                        raise TypeError(f"{item.name} must be a table")
                    kwargs[item.name] = Rate(float(value["per_second"]), int(value["burst"]))
                else:
                    kwargs[item.name] = type(default)(value)
        except (TypeError, ValueError, KeyError) as error:
            raise ConfigurationError(f"A [limits] setting is invalid: {error}.") from error
        limits = cls(**kwargs)
        for name in (
            "max_body_bytes",
            "max_admin_body_bytes",
            "max_header_bytes",
            "max_connections",
        ):
            if getattr(limits, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1.")
        return limits


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
    limits: Limits = field(default_factory=Limits)
    metrics_token: str | None = None
    """When set, ``/metrics`` needs ``Authorization: Bearer <metrics_token>``."""
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
    limits = table.get("limits", {})
    if not all(isinstance(t, dict) for t in (server, rollout, limits)):
        raise ConfigurationError(f"{config_file}: [server], [rollout] and [limits] must be tables.")
    metrics_token = server.get("metrics_token")
    if metrics_token is not None and (not isinstance(metrics_token, str) or not metrics_token):
        raise ConfigurationError(f"{config_file}: server.metrics_token must be a string.")
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
        limits=Limits.from_mapping(limits),
        metrics_token=metrics_token,
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
