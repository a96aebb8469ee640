"""`livepatch-admin --help` must not pay for the database layer or the web stack."""

from __future__ import annotations

import subprocess
import sys

from livepatch.server import patches
from livepatch.server.admin import patches as patch_commands

HEAVY = ("sqlalchemy", "fastapi", "uvicorn", "alembic", "pydantic", "livepatch.server.service")


def test_building_the_admin_parser_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from livepatch.server.admin import build_parser\n"
        "from livepatch.server.cli import build_parser as server_parser\n"
        "build_parser(); server_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_publish_offers_exactly_the_catalogue_severities() -> None:
    assert tuple(s.value for s in patches.Severity) == patch_commands.SEVERITIES
