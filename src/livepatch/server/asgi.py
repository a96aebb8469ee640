"""An ASGI application factory configured from the environment.

uvicorn needs an import string to run several worker processes; each worker
calls `create()` and finds the same data directory, database and blob
store through these variables (set by ``livepatch-server serve``), and the
directory where the workers share their counters so that /metrics shows
the server's totals (see ``metrics.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from livepatch.server import protocol
from livepatch.server.api.app import create_app
from livepatch.server.api.fastpath import ASGIApp
from livepatch.server.config import load_config
from livepatch.server.service import Service

DATA_DIR_VAR = "LIVEPATCH_SERVER_DATA"
DATABASE_VAR = "LIVEPATCH_SERVER_DATABASE"
BLOBS_VAR = "LIVEPATCH_SERVER_BLOBS"
METRICS_DIR_VAR = "LIVEPATCH_SERVER_METRICS_DIR"
PUBLIC_TARGETS_VAR = "LIVEPATCH_SERVER_PUBLIC_TARGETS"


def create() -> ASGIApp:
    database = os.environ.get(DATABASE_VAR) or None
    blobs = os.environ.get(BLOBS_VAR) or None
    public = True if os.environ.get(PUBLIC_TARGETS_VAR) == "1" else None
    config = load_config(
        Path(os.environ[DATA_DIR_VAR]), database, blobs_url=blobs, public_targets=public
    )
    protocol.configure(config.limits)
    service = Service(config)
    metrics_dir = os.environ.get(METRICS_DIR_VAR)
    if metrics_dir:
        service.metrics.share(Path(metrics_dir))
    return create_app(service, periodic=True)
