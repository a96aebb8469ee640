"""Record benchmark figures in bench/RESULTS.md, one section per benchmark.

A section is delimited by HTML comments so that each benchmark rewrites only
its own figures; the file is replaced atomically.
"""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by the benchmark named in it; `make bench` runs them all.\n"
)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def record(name: str, command: str, body: str, path: Path = RESULTS) -> None:
    """Replace the section `name` with `body`, noting the command and the date."""
    start, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    today = datetime.date.today().isoformat()
    section = (
        f"{start}\n## {name}\n\n"
        f"Reproduce: `{command}` ({today}; {machine()})\n\n{body.strip()}\n{end}"
    )
    text = path.read_text() if path.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".RESULTS.")
    with os.fdopen(fd, "w") as stream:
        stream.write(text)
    os.replace(tmp, path)
