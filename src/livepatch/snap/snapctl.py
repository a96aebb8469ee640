"""A typed wrapper around ``snapctl``, the command snapd gives hooks and apps.

Only what the hooks use: read the configuration, write configuration
defaults, report health. Every call is one ``snapctl`` process; the program is
injectable so tests put a stand-in on PATH or pass its path.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from livepatch.errors import LivepatchError

HEALTH_CODE = re.compile(r"[a-z](?:-?[a-z0-9])+")
MESSAGE_MIN, MESSAGE_MAX = 7, 70


class SnapctlError(LivepatchError):
    code = "snapctl-failed"


class HealthStatus(StrEnum):
    OKAY = "okay"
    WAITING = "waiting"
    BLOCKED = "blocked"
    ERROR = "error"


@dataclass(frozen=True)
class Health:
    """What ``snapctl set-health`` reports; the rules are snapd's (ctlcmd/health.go)."""

    status: HealthStatus
    message: str = ""
    code: str = ""

    def __post_init__(self) -> None:
        if self.status is HealthStatus.OKAY:
            if self.message or self.code:
                raise ValueError("an okay health takes no message and no code")
            return
        if len(self.message) < MESSAGE_MIN:
            raise ValueError(f"a {self.status} health needs a message of 7 characters or more")
        if self.code and not (3 <= len(self.code) <= 30 and HEALTH_CODE.fullmatch(self.code)):
            raise ValueError(f"{self.code!r} is not a valid health code")

    def argv(self) -> list[str]:
        if self.status is HealthStatus.OKAY:
            return ["set-health", "okay"]
        argv = ["set-health", self.status.value, shorten(self.message)]
        if self.code:
            argv.append(f"--code={self.code}")
        return argv


def shorten(message: str) -> str:
    """At most 70 characters, cut the way snapd cuts longer messages."""
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 1] + "…"


def health_code(text: str) -> str:
    """`text` (an error code) made into a valid health code, or '' when it cannot be."""
    code = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:30]
    code = code.rstrip("-")
    return code if len(code) >= 3 and HEALTH_CODE.fullmatch(code) else ""


class Snapctl:
    def __init__(self, program: str = "snapctl", *, timeout: float = 60.0) -> None:
        self.program = program
        self.timeout = timeout

    def run(self, argv: Sequence[str]) -> str:
        try:
            done = subprocess.run(
                [self.program, *argv],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SnapctlError(f"Running snapctl {argv[0]} failed ({error}).") from error
        if done.returncode != 0:
            detail = done.stderr.strip() or f"exit status {done.returncode}"
            raise SnapctlError(f"snapctl {argv[0]} failed: {detail}")
        return done.stdout

    def get(self, keys: Sequence[str]) -> dict[str, Any]:
        """The keys that are set, as JSON values (``snapctl get -d``); unset keys are absent."""
        text = self.run(["get", "-d", *keys])
        try:
            document = json.loads(text or "{}")
        except ValueError as error:
            raise SnapctlError(
                f"snapctl get printed something that is not JSON: {text!r}"
            ) from error
        if not isinstance(document, dict):
            raise SnapctlError(f"snapctl get printed {type(document).__name__}, not an object.")
        return document

    def set(self, values: Mapping[str, Any]) -> None:
        """Set each key to a JSON value (``snapctl set -t`` keeps the types)."""
        if values:
            self.run(
                ["set", "-t", *(f"{key}={json.dumps(value)}" for key, value in values.items())]
            )

    def set_health(self, health: Health) -> None:
        self.run(health.argv())
