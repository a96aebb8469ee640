"""Every error the API returns has the same shape: {"error": {"code", "message"}}.

FastAPI's own handlers (validation, 404, 405) are replaced so that clients
parse one format, and unexpected exceptions become a plain 500 without a
traceback in the body.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from livepatch.server.errors import ServerError, retry_after

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "too-large",
    415: "unsupported-media-type",
}


def error_response(
    status: int, code: str, message: str, *, retry: float | None = None
) -> JSONResponse:
    """The JSON error; with `retry` (seconds to wait) a Retry-After header too."""
    headers = None if retry is None else {"Retry-After": retry_after(retry)}
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def validation_message(error: RequestValidationError) -> str:
    """One sentence naming the first offending field and why."""
    details = error.errors()
    if not details:
        return "The request is not valid: check it against the API description."
    first = details[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    reason = str(first.get("msg", "is not valid")).rstrip(".")
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON: send a JSON object."
    where = f"Field {location!r}" if location else "The request body"
    return f"{where}: {reason[0].lower()}{reason[1:]}."


def install(app: FastAPI) -> None:
    @app.exception_handler(ServerError)
    async def _server_error(_request: Request, error: ServerError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, retry=error.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid-request", validation_message(error))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http-error")
        detail = error.detail if isinstance(error.detail, str) else "The request failed."
        message = detail if detail.endswith(".") else f"{detail}."
        return error_response(error.status_code, code, message)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=error)
        return error_response(
            500, "internal-error", "The service failed unexpectedly: try again later."
        )
