"""Progress for people: numbered steps with their times, and short indented details."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

INDENT = " " * 11


class Narrator:
    def __init__(self, out: TextIO | None = None, *, total_steps: int = 0) -> None:
        self.out = out if out is not None else sys.stdout
        self.started = time.monotonic()
        self.total_steps = total_steps
        self.number = 0
        self.timings: list[tuple[str, float]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.number += 1
        of = f"/{self.total_steps}" if self.total_steps else ""
        self._print(f"[{self.elapsed():5.1f} s] {self.number}{of}. {title}")
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            self.timings.append((title, seconds))
            self._print(f"{INDENT}({seconds:.1f} s)")

    def say(self, text: str = "") -> None:
        for line in text.splitlines() or [""]:
            self._print(f"{INDENT}{line}".rstrip())

    def command(self, where: str, argv: Sequence[str]) -> None:
        self.say(f"{where} {shlex.join(argv)}")

    def output(self, text: str, *, limit: int = 40) -> None:
        """A command's output, indented a little further."""
        lines = text.rstrip("\n").splitlines()
        for line in lines[:limit]:
            self._print(f"{INDENT}  {line}".rstrip())
        if len(lines) > limit:
            self._print(f"{INDENT}  … ({len(lines) - limit} more lines)")
