"""How guest scripts hand structured results to the host: one marked JSON line."""

from __future__ import annotations

import json
from typing import Any

MARKER = "LIVEPATCH-RESULTS "


def emit(results: Any) -> None:
    print(MARKER + json.dumps(results, default=str), flush=True)


def parse_results(output: str) -> Any:
    """The last results line in `output`; ValueError when there is none."""
    for line in reversed(output.splitlines()):
        index = line.find(MARKER)
        if index >= 0:
            return json.loads(line[index + len(MARKER) :])
    raise ValueError("the guest printed no results line")
