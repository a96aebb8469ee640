"""HTTP client for the patch service's machine endpoints (docs/CONTRACTS.md).

``requests`` is imported only here and by the other modules that talk to the
service, so commands that never do (``status``, ``config``) do not pay for it.
Transport failures become ServiceUnreachable or TlsFailure, error bodies
``{"error": {"code", "message"}}`` become the matching client error, their
text cleaned (``livepatch.client.untrusted``). The token and credential
travel in the body and the Authorization header only; they never appear in
messages or logs, and redirects are never followed (a redirect would carry
them to whatever host it names). Each call has a total deadline
(``livepatch.transfer``); 429 and 503 become ServiceBusy with the wait the
service asked for in Retry-After.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3

from livepatch import __version__, transfer
from livepatch.client import untrusted
from livepatch.client.errors import (
    CredentialRejected,
    ServiceBusy,
    ServiceError,
    ServiceUnreachable,
    TlsFailure,
    TokenExhausted,
    TokenRevoked,
    UnknownToken,
)
from livepatch.client.ports import EnrolResult
from livepatch.client.schedule import retry_after_seconds
from livepatch.client.state import Credential, Report
from livepatch.proxies import for_url

log = logging.getLogger(__name__)

MAX_RESPONSE = 4 * 1024 * 1024
TIMEOUT = (10.0, 60.0)
"""Connect and per-read timeouts; `transfer.Limits` bounds each call as a whole."""
TRANSPORT_ERRORS = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError)
ERRORS_BY_CODE: Mapping[str, type[UnknownToken | TokenRevoked | TokenExhausted]] = {
    "unknown-token": UnknownToken,
    "token-revoked": TokenRevoked,
    "token-exhausted": TokenExhausted,
}


class HttpServiceClient:
    def __init__(
        self,
        base_url: str,
        *,
        ca_bundle: str | None = None,
        proxies: Mapping[str, str] | None = None,
        session: requests.Session | None = None,
        limits: transfer.Limits | None = None,
    ) -> None:
        """`proxies` in requests' shape; chosen per request (see ``livepatch.proxies``)."""
        self.base_url = base_url.rstrip("/")
        self.session = session or transfer.session()
        self.limits = limits or transfer.Limits()
        self.session.headers["User-Agent"] = f"livepatch/{__version__}"
        # Passed on each request: a session-level verify loses to $REQUESTS_CA_BUNDLE.
        self.verify: str | bool = ca_bundle or True
        self.proxies = dict(proxies or {})

    def enrol(
        self,
        *,
        token: str,
        machine_id: str,
        hostname: str,
        kernel: str,
        architecture: str,
        proof: str | None = None,
    ) -> EnrolResult:
        request = {
            "token": token,
            "machine_id": machine_id,
            "hostname": hostname,
            "kernel": kernel,
            "architecture": architecture,
        }
        if proof is not None:
            request["proof"] = proof
        body = self._call("POST", "/v1/enrol", json_body=request)
        try:
            return EnrolResult(
                machine_id=untrusted.clean(body["machine_id"], untrusted.NAME_LIMIT),
                credential=Credential(
                    str(body["credential"]), datetime.fromisoformat(str(body["expires"]))
                ),
                tier=untrusted.clean(body.get("tier") or "community", untrusted.NAME_LIMIT),
                root=json.dumps(body["root"]).encode(),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise self._malformed("/v1/enrol") from error

    def renew(self, machine_id: str, credential: Credential) -> Credential:
        path = f"/v1/machines/{machine_id}/renew"
        body = self._call("POST", path, credential=credential)
        try:
            return Credential(str(body["credential"]), datetime.fromisoformat(body["expires"]))
        except (KeyError, ValueError, TypeError) as error:
            raise self._malformed(path) from error

    def boot_kernel(
        self, machine_id: str, credential: Credential, kernel: str, architecture: str
    ) -> None:
        self._call(
            "PUT",
            f"/v1/machines/{machine_id}/kernel",
            credential=credential,
            json_body={"kernel": kernel, "architecture": architecture},
        )

    def deregister(self, machine_id: str, credential: Credential) -> None:
        self._call("DELETE", f"/v1/machines/{machine_id}", credential=credential)

    def report(self, machine_id: str, credential: Credential, report: Report) -> None:
        self._call(
            "POST",
            f"/v1/machines/{machine_id}/reports",
            credential=credential,
            json_body=report_body(report),
        )

    def _malformed(self, path: str) -> ServiceError:
        return ServiceError(
            f"The patch service sent a malformed answer to {path}; check its version."
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        credential: Credential | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {credential.token}"} if credential else {}
        seconds = self.limits.deadline(MAX_RESPONSE)
        with transfer.limit(seconds) as deadline:
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    timeout=TIMEOUT,
                    stream=True,
                    allow_redirects=False,
                    verify=self.verify,
                    proxies=for_url(url, self.proxies),
                )
                content = response.raw.read(MAX_RESPONSE + 1, decode_content=True)
                deadline.check()
            except transfer.DeadlineExceeded as error:
                raise ServiceUnreachable(self.base_url, str(error)) from error
            except TRANSPORT_ERRORS as error:
                if deadline.expired:
                    reason = str(transfer.DeadlineExceeded(seconds))
                    raise ServiceUnreachable(self.base_url, reason) from error
                raise self._transport_failure(error) from error
        if len(content) > MAX_RESPONSE:
            raise ServiceError(f"The patch service sent an oversized answer to {path}.")
        status = response.status_code
        log.debug("%s %s -> %s", method, path, status)
        if 300 <= status < 400:
            raise ServiceError(
                f"The patch service answered {method} {path} with a redirect (HTTP {status}), "
                "which the client never follows; set remote-server to the service's own "
                "address.",
                code="service-redirect",
            )
        if status in (429, 503):
            wait = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
            raise ServiceBusy(self.base_url, status, wait)
        body = _json(content)
        if status < 400:
            return body
        raw = body.get("error")
        detail: dict[str, Any] = raw if isinstance(raw, dict) else {}
        code = untrusted.clean(detail.get("code", ""), untrusted.CODE_LIMIT)
        if code in ERRORS_BY_CODE:
            raise ERRORS_BY_CODE[code]()
        if status == 401 and credential is not None:
            raise CredentialRejected()
        message = untrusted.clean(detail.get("message", ""), untrusted.MESSAGE_LIMIT)
        message = message or untrusted.clean(response.reason or "", untrusted.MESSAGE_LIMIT)
        refusal = ServiceError(
            f"The patch service refused {method} {path} with HTTP {status} "
            f"({code or 'no code'}: {message.rstrip('.')}).",
            code=code or "service-error",
        )
        refusal.status = status
        raise refusal

    def _transport_failure(self, error: BaseException) -> ServiceUnreachable | TlsFailure:
        if isinstance(error, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
            return TlsFailure(self.base_url, transport_reason(error))
        if isinstance(error, requests.exceptions.RequestException) and not isinstance(
            error, requests.exceptions.ConnectionError | requests.exceptions.Timeout
        ):
            return ServiceUnreachable(self.base_url, type(error).__name__)
        return ServiceUnreachable(self.base_url, transport_reason(error))


def _json(content: bytes) -> dict[str, Any]:
    if not content:
        return {}
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def transport_reason(error: BaseException) -> str:
    """The innermost cause's text, short: requests nests urllib3 errors deeply."""
    inner: BaseException = error
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    for candidate in (error.args[0] if error.args else None, inner):
        reason = getattr(candidate, "reason", candidate)
        if reason is not None:
            return untrusted.clean(reason, 200)
    return type(error).__name__


def report_body(report: Report) -> dict[str, Any]:
    """The report as the service takes it; `health` and `evidence` only once judged
    (a service older than these fields still takes the load outcome)."""
    body = vars(report).copy()
    for optional in ("health", "evidence"):
        if body[optional] is None:
            del body[optional]
    return body
