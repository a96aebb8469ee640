"""The health verdict on a patch after its window: pure, from what the kernel said.

A patch is unhealthy when, since it was loaded,
- the kernel log has an oops, BUG or WARNING report that names the patch's
  module or one of the functions it replaces (the "Modules linked in" line
  names every module and does not count),
- the kernel gained a taint flag that means trouble (HEALTH_TAINTS), or
- the patch is no longer enabled (someone else disabled or removed it).
The kernel log is /dev/kmsg, or syslog(2) where a snap's device cgroup refuses
/dev/kmsg (livepatch.kernel.kmsg): inside the snap, log-observe grants the file
and kernel-module-control the CAP_SYSLOG that dmesg_restrict asks for. When
neither can be read, the verdict says so instead of passing in silence.
The evidence is short, one line, without control characters (it is sent to
the service and shown by `livepatch status`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from livepatch.kernel.taint import decode_taint

HEALTH_TAINTS = "DWLBM"
"""Die (oops/BUG), Warning, soft Lockup, Bad page, Machine check. Loading a livepatch
itself sets O, E and K, which say nothing about its health."""
MAX_EVIDENCE = 1024
REPORT_START = re.compile(
    r"(\bBUG:|\bWARNING:|\bOops\b|kernel BUG at|general protection fault|Kernel panic|"
    r"watchdog: BUG: soft lockup)"
)
REPORT_END = re.compile(r"---\[ end trace")
MAX_REPORT_LINES = 80
UNRELATED = ("Modules linked in:",)
LOG_UNREADABLE = (
    "the kernel log was not readable, so only the taint and the enabled state were "
    "checked (inside the snap, connect its log-observe and kernel-module-control plugs: "
    "sudo snap connect livepatch:log-observe)"
)


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    evidence: str = ""

    @property
    def name(self) -> str:
        return "healthy" if self.healthy else "unhealthy"


def new_taint_letters(before: int, after: int) -> str:
    """Letters of the HEALTH_TAINTS flags set in `after` but not in `before`."""
    letters = {flag.letter for flag in decode_taint(after & ~before)}
    return "".join(letter for letter in HEALTH_TAINTS if letter in letters)


def reports(lines: Sequence[str]) -> list[list[str]]:
    """Kernel problem reports in `lines`: from a BUG/WARNING/Oops line to its end marker."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if REPORT_START.search(line) and (current is None or len(current) > 1):
            current = [line]
            found.append(current)
        elif current is not None:
            current.append(line)
            if REPORT_END.search(line) or len(current) >= MAX_REPORT_LINES:
                current = None
    return found


def _names(line: str, words: Iterable[str]) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", line) for word in words if word)


def naming(report: Sequence[str], module: str, functions: Sequence[str]) -> list[str]:
    """The lines of `report` naming the module or one of the functions."""
    words = (module, *functions)
    return [
        line
        for line in report
        if not any(marker in line for marker in UNRELATED) and _names(line, words)
    ]


def clean(text: str, limit: int = MAX_EVIDENCE) -> str:
    """One line of printable text, at most `limit` characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def judge(
    *,
    module: str,
    functions: Sequence[str],
    taint_before: int,
    taint_after: int,
    log: Sequence[str] | None,
    enabled: bool,
) -> Verdict:
    """The verdict for `module` after its window (see the module docstring).

    `log` None: the kernel log could not be read; the verdict then rests on the
    taint and the enabled state only, and its evidence says so (naming the plug).
    """
    evidence: list[str] = []
    if not enabled:
        evidence.append(f"livepatch {module} was disabled or removed by someone else")
    for report in reports(log or ()):
        named = naming(report, module, functions)
        if named:
            head = report[0] if report[0] not in named else ""
            evidence.append(" | ".join(line for line in (head, *named[:3]) if line))
    letters = new_taint_letters(taint_before, taint_after)
    if letters:
        evidence.append(f"new taint {letters}")
    notes = [LOG_UNREADABLE] if log is None else []
    return Verdict(not evidence, clean("; ".join([*evidence, *notes])))
