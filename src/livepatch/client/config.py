"""Settings: parse ``KEY=VALUE``, validate, persist, print as ``KEY: value``.

Keys and the print format follow canonical-livepatch's ``config`` because the
Ubuntu Pro client writes them and reads them back (see COMPAT.md). An empty
value unsets a key. Values that span lines (a PEM in ca-certs) print as one
JSON-quoted line so the ``KEY: value`` shape holds.

Two files: ``config.json`` (0600, every value as given: proxy URLs may carry
passwords) and ``config.public.json`` beside it (0644, the same settings with
passwords in URLs replaced by ``REDACTED``), so ``livepatch config`` and
``livepatch status`` work without root. Proxy URLs are parsed strictly
(``livepatch.client.proxyurl``), when set and when read back; error messages
never quote a password.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from livepatch.client import proxyurl
from livepatch.client.errors import InvalidConfig
from livepatch.client.store import write_atomic
from livepatch.rollout import Tier

DEFAULT_CHECK_INTERVAL = 60
DEFAULT_HEALTH_WINDOW = 300
MAX_HEALTH_WINDOW = 86400
PEM_MARKER = "-----BEGIN CERTIFICATE-----"
REDACTED = proxyurl.REDACTED
PROXY_KEYS = ("http-proxy", "https-proxy")
PUBLIC_SUFFIX = ".public.json"


@dataclass(frozen=True)
class Config:
    remote_server: str = ""
    check_interval: int = DEFAULT_CHECK_INTERVAL
    """Minutes between check-ins."""
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    ca_certs: str = ""
    """A PEM bundle or the path of one."""
    tier: str = ""
    """Overrides the tier the service assigned at enrolment when set."""
    health_window: int = DEFAULT_HEALTH_WINDOW
    """Seconds a newly applied patch is watched (kernel log, taint) before it is judged."""

    def proxies(self) -> dict[str, str]:
        """The proxy settings in the shape `requests` takes; empty when unset."""
        result = {
            "http": _for_requests("http-proxy", self.http_proxy),
            "https": _for_requests("https-proxy", self.https_proxy),
            "no_proxy": self.no_proxy,
        }
        return {key: value for key, value in result.items() if value}


def _for_requests(key: str, value: str) -> str:
    if not value:
        return ""
    try:
        return proxyurl.parse(value).for_requests()
    except ValueError as error:
        raise InvalidConfig(_bad_proxy(key, value, error)) from None


def _bad_proxy(key: str, value: str, error: ValueError) -> str:
    schemes = "/".join(proxyurl.SCHEMES)
    return (
        f"{key} must be a {schemes} URL of the form SCHEME://[USER[:PASSWORD]@]HOST[:PORT] "
        f"({error}), got {proxyurl.redact(value)!r}."
    )


KEYS: tuple[str, ...] = tuple(field.name.replace("_", "-") for field in dataclasses.fields(Config))


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise InvalidConfig(f"Expected KEY=VALUE, got {text!r}; for example check-interval=60.")
    if key not in KEYS:
        raise InvalidConfig(f"Unknown config key {key!r}; known keys are {', '.join(KEYS)}.")
    return key, value.strip()


def assign(config: Config, pairs: Iterable[tuple[str, str]]) -> Config:
    """Return `config` with each (key, value) set after validation; '' unsets."""
    changes: dict[str, object] = {}
    defaults = Config()
    for key, value in pairs:
        attr = key.replace("-", "_")
        changes[attr] = _validate(key, value) if value else getattr(defaults, attr)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _validate(key: str, value: str) -> object:
    if key == "check-interval":
        try:
            minutes = int(value)
        except ValueError:
            minutes = 0
        if minutes < 1:
            raise InvalidConfig(f"check-interval must be a whole number of minutes, got {value!r}.")
        return minutes
    if key == "health-window":
        return _health_window(value)
    if key == "remote-server":
        return _url(key, value, ("https",)).rstrip("/")
    if key in PROXY_KEYS:
        try:
            proxyurl.parse(value)
        except ValueError as error:
            raise InvalidConfig(_bad_proxy(key, value, error)) from None
        return value
    if key == "tier":
        if value not in {tier.value for tier in Tier}:
            choices = ", ".join(tier.value for tier in Tier)
            raise InvalidConfig(f"tier must be one of {choices}, got {value!r}.")
        return value
    if key == "ca-certs":
        if PEM_MARKER not in value and not Path(value).is_file():
            raise InvalidConfig("ca-certs must be a PEM certificate bundle or the path of one.")
        return value
    return value


def _health_window(value: object) -> int:
    try:
        seconds = int(str(value))
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= MAX_HEALTH_WINDOW:
        raise InvalidConfig(
            f"health-window must be a whole number of seconds from 1 to {MAX_HEALTH_WINDOW}, "
            f"got {value!r}."
        )
    return seconds


def _url(key: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        shown = proxyurl.redact(value)
        raise InvalidConfig(f"{key} must be a {'/'.join(schemes)} URL, got {shown!r}.")
    return value


def render(config: Config) -> str:
    """``KEY: value`` lines in KEYS order, each value on one line."""
    lines = []
    for key in KEYS:
        value = getattr(config, key.replace("-", "_"))
        text = str(value)
        if "\n" in text or text != text.strip():
            text = json.dumps(text)
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n"


def from_mapping(data: Mapping[str, object]) -> Config:
    """Settings saved earlier; ValueError naming the first bad value (a hand edit)."""
    values: dict[str, object] = {}
    for key in KEYS:
        if key not in data:
            continue
        value = data[key]
        if key == "check-interval":
            try:
                minutes = int(str(value))
            except ValueError:
                minutes = 0
            if minutes < 1:
                raise ValueError(f"check-interval is {value!r}, not a whole number of minutes")
            values["check_interval"] = minutes
        elif key == "health-window":
            try:
                values["health_window"] = _health_window(value)
            except InvalidConfig as error:
                raise ValueError(f"health-window is {value!r}, not a number of seconds") from error
        elif key in PROXY_KEYS and value:
            try:
                proxyurl.parse(str(value))
            except ValueError as error:
                raise ValueError(f"{key} is not a proxy URL ({error})") from None
            values[key.replace("-", "_")] = str(value)
        else:
            values[key.replace("-", "_")] = str(value)
    return Config(**values)  # type: ignore[arg-type]


def to_mapping(config: Config) -> dict[str, object]:
    defaults = Config()
    return {
        key: getattr(config, key.replace("-", "_"))
        for key in KEYS
        if getattr(config, key.replace("-", "_")) != getattr(defaults, key.replace("-", "_"))
    }


def load(path: Path) -> Config:
    """The saved settings; defaults when there is no file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    try:
        data = json.loads(raw)
    except ValueError as error:  # also bytes that are not UTF-8
        raise unreadable(path, f"not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise unreadable(path, "it must hold a JSON object")
    try:
        return from_mapping(data)
    except ValueError as error:
        raise unreadable(path, str(error)) from error


def unreadable(path: Path, detail: str) -> InvalidConfig:
    """The error for a settings file that cannot be used as it is."""
    return InvalidConfig(
        f"The config file {path} is unreadable ({detail}); set the settings again with "
        "`livepatch config KEY=VALUE` to fix it."
    )


def public_path(path: Path) -> Path:
    """The world-readable copy of the settings file at `path`, secrets removed."""
    return path.with_name(path.name.removesuffix(".json") + PUBLIC_SUFFIX)


def redact_url(value: str) -> str:
    """`value` with the password of its user-info part replaced, if it has one."""
    return proxyurl.redact(value)


def redact(config: Config) -> Config:
    """`config` without secrets: passwords in URLs are replaced by REDACTED."""
    return dataclasses.replace(
        config,
        remote_server=redact_url(config.remote_server),
        http_proxy=redact_url(config.http_proxy),
        https_proxy=redact_url(config.https_proxy),
    )


def save(path: Path, config: Config) -> None:
    """Write the private settings (0600), then their redacted public copy (0644)."""
    write_atomic(path, json.dumps(to_mapping(config), indent=2).encode() + b"\n", mode=0o600)
    public = json.dumps(to_mapping(redact(config)), indent=2).encode() + b"\n"
    write_atomic(public_path(path), public, mode=0o644)


def load_public(path: Path) -> Config:
    """The settings as anyone may read them (secrets redacted); defaults when unset."""
    return load(public_path(path))
