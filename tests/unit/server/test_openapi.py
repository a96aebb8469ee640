"""The committed OpenAPI document is the app's; errors are documented as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from livepatch.server.openapi import document

COMMITTED = Path(__file__).parents[3] / "interfaces" / "openapi.json"


def test_committed_document_equals_the_apps() -> None:
    assert json.loads(COMMITTED.read_text()) == document(), (
        "interfaces/openapi.json is stale: run "
        "`python -m livepatch.server.openapi interfaces/openapi.json`"
    )


def test_every_operation_documents_the_json_error_shape() -> None:
    schema = document()
    assert set(schema["paths"]) >= {
        "/v1/enrol",
        "/v1/machines/{machine_id}/renew",
        "/v1/machines/{machine_id}",
        "/v1/machines/{machine_id}/reports",
        "/v1/metadata/{file}",
        "/v1/targets/{path}",
        "/healthz",
        "/metrics",
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            errors = [s for s in operation["responses"] if s.startswith(("4", "5"))]
            assert errors, f"{method} {path} documents no error"
            for status in errors:
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
