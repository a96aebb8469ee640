"""Whether a kernel gets livepatches: the ``Supported`` answer of status and the API.

Pure functions shared by the patch service's kernel-support API (Ubuntu
Pro's ``GET /v1/api/kernels/supported``) and its fleet views. Kernel keys
are ``uname -r`` strings such as ``6.1.0-56-amd64`` or ``5.15.0-91-generic``:
a series (``6.1``), an ABI (``6.1.0-56``) and a flavour (``amd64``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

_KEY = re.compile(r"(\d+)\.(\d+)\.(\d+)-(\d+)(?:\.[0-9.]+)?-([a-z0-9][a-z0-9-]*)")
_SERIES = re.compile(r"(\d+)\.(\d+)")


class Support(StrEnum):
    SUPPORTED = "supported"
    KERNEL_UPGRADE_REQUIRED = "kernel-upgrade-required"
    KERNEL_END_OF_LIFE = "kernel-end-of-life"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"


@dataclass(frozen=True, order=True)
class KernelKey:
    major: int
    minor: int
    patch: int
    abi: int
    flavour: str

    @property
    def series(self) -> tuple[int, int]:
        return (self.major, self.minor)


def parse(key: str) -> KernelKey | None:
    found = _KEY.fullmatch(key)
    if found is None:
        return None
    major, minor, patch, abi, flavour = found.groups()
    return KernelKey(int(major), int(minor), int(patch), int(abi), flavour)


def machine_support(
    kernel: str,
    *,
    live: Iterable[str],
    end_of_life: Mapping[str, datetime],
    now: datetime,
) -> Support:
    """One running kernel's support.

    `live`: the kernel keys of the patches published now (what the signed
    metadata lists, so a client computes the same answer from it);
    `end_of_life`: operator-set dates. A kernel past its end of life is
    ``kernel-end-of-life``; one with a patch is ``supported``; one of a
    series and flavour patches exist for is ``kernel-upgrade-required`` when
    a newer kernel of it has a patch and ``supported`` otherwise (newer than
    every patched one: its patches are not needed yet); any other is
    ``unsupported``; a key that is not a kernel release is ``unknown``.
    """
    eol = end_of_life.get(kernel)
    if eol is not None and eol <= now:
        return Support.KERNEL_END_OF_LIFE
    return published_support(kernel, live)


def published_support(kernel: str, live: Iterable[str]) -> Support:
    """`machine_support` without end-of-life dates: what a client tells from signed metadata."""
    live_keys = set(live)
    if kernel in live_keys:
        return Support.SUPPORTED
    parsed = parse(kernel)
    if parsed is None:
        return Support.UNKNOWN
    siblings = [
        p
        for p in (parse(k) for k in live_keys)
        if p is not None and p.series == parsed.series and p.flavour == parsed.flavour
    ]
    if not siblings:
        return Support.UNSUPPORTED
    newer = any(p > parsed for p in siblings)
    return Support.KERNEL_UPGRADE_REQUIRED if newer else Support.SUPPORTED


def series_support(
    version: str,
    flavour: str,
    *,
    live: Iterable[str],
    end_of_life: Mapping[str, datetime],
    now: datetime,
) -> Support:
    """Ubuntu Pro's question: does series `version` (``6.1``) of `flavour` get patches?

    ``supported`` when a live patch exists for a kernel of that series and
    flavour not past its end of life; ``kernel-end-of-life`` when every such
    kernel is past it; ``unsupported`` when there are none; ``unknown`` when
    `version` is not ``MAJOR.MINOR``.
    """
    found = _SERIES.fullmatch(version)
    if found is None:
        return Support.UNKNOWN
    series = (int(found.group(1)), int(found.group(2)))
    matching = [
        k
        for k in set(live)
        if (p := parse(k)) is not None and p.series == series and p.flavour == flavour
    ]
    if not matching:
        return Support.UNSUPPORTED
    current = [k for k in matching if (eol := end_of_life.get(k)) is None or eol > now]
    return Support.SUPPORTED if current else Support.KERNEL_END_OF_LIFE
