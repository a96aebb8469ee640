"""The OpenAPI document of the API, as committed at interfaces/openapi.json.

Regenerate after changing the API: ``python -m livepatch.server.openapi
interfaces/openapi.json`` (a test fails while the two differ).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from livepatch.server.api.app import create_api
from livepatch.server.config import ServerConfig
from livepatch.server.service import Service


def document() -> dict[str, Any]:
    """The schema of the app; building it opens no database connection."""
    config = ServerConfig(data_dir=Path("/nonexistent"), database_url="sqlite://")
    service = Service(config)
    try:
        schema: dict[str, Any] = create_api(service).openapi()
    finally:
        service.close()
    return schema


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
