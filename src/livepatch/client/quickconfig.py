"""`livepatch config` (reading) from the settings files alone, at Python's start-up cost.

The full path (``livepatch.client.config``) validates with dataclasses and
URL parsing, which cost more than the answer. This reads the same files the
same way (root: ``config.json``; others: the redacted public copy) and
prints the same ``KEY: value`` lines; whenever it is unsure (a file that is
invalid or unreadable in another way than "not there", a value of an
unexpected type), it gives None and the full path answers, with its error.
KEYS and DEFAULTS mirror ``config.Config``; a unit test pins them.
"""

import os

from livepatch.client import jsonlite

KEYS = (
    "remote-server",
    "check-interval",
    "http-proxy",
    "https-proxy",
    "no-proxy",
    "ca-certs",
    "tier",
    "health-window",
)
NUMBERS = {"check-interval": (1, None), "health-window": (1, 86400)}
"""Whole-number settings and their bounds (``config.from_mapping``)."""
DEFAULTS: dict[str, str | int] = {key: "" for key in KEYS} | {
    "check-interval": 60,
    "health-window": 300,
}
REDACTED = "REDACTED"
PRIVATE, PUBLIC = "config.json", "config.public.json"


def _read(path: str) -> str | None:
    """The file's text; None when it does not exist (other errors propagate)."""
    try:
        with open(path, "rb") as stream:
            return stream.read().decode("utf-8")
    except FileNotFoundError:
        return None


def _parse(text: str | None) -> dict[str, str | int] | None:
    """The settings in `text`, as ``config.load`` reads them; None if it would refuse."""
    if text is None:
        return dict(DEFAULTS)
    try:
        data = jsonlite.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    settings = dict(DEFAULTS)
    for key in KEYS:
        if key not in data:
            continue
        value = data[key]
        if key in NUMBERS:
            low, high = NUMBERS[key]
            if type(value) is not int or value < low or (high is not None and value > high):
                return None
        elif not isinstance(value, str):
            return None
        settings[key] = value
    return settings


def load(state_dir: str) -> dict[str, str | int] | None:
    """The settings this user may read, or None when the full path must answer."""
    try:
        try:
            return _parse(_read(os.path.join(state_dir, PRIVATE)))
        except PermissionError:
            pass
        text = _read(os.path.join(state_dir, PUBLIC))
    except (OSError, ValueError):  # ValueError: not UTF-8
        return None
    if text is None:
        return None  # the full path says that only root may read the settings
    return _parse(text)


def render(settings: dict[str, str | int]) -> str:
    """``KEY: value`` lines in KEYS order, each value on one line (``config.render``)."""
    lines = []
    for key in KEYS:
        text = str(settings[key])
        if "\n" in text or text != text.strip():
            text = jsonlite.quote(text)
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n"


def redacted(settings: dict[str, str | int]) -> bool:
    """Whether some value is shown as REDACTED because only root may read it."""
    return any(REDACTED in str(value) for value in settings.values())
