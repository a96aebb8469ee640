"""The client's HTTP clients against a hostile service over real HTTPS on loopback:
redirects, a server dripping one byte per read, 429/503 with Retry-After, and error
text full of terminal escapes. (Issue 16's findings, each as it was reported.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api import exceptions

from livepatch.client.api import HttpServiceClient
from livepatch.client.errors import ServiceBusy, ServiceError, ServiceUnreachable
from livepatch.client.state import Credential, Report
from livepatch.transfer import Limits
from livepatch.trust.fetcher import FetchConfig, ServiceFetcher
from tests.integration.client.hostile import Handler, HostileServer, Request, serving
from tests.integration.client.service import private_ca

TOKEN = "9f1c2e3d4b5a69788796a5b4c3d2e1f0"
CREDENTIAL = Credential("c" * 43, datetime.now(UTC) + timedelta(days=30))
MACHINE = "0123456789abcdef0123456789abcdef"
REPORT = Report("lp-6.1.0-56-amd64-1", "6.1.0-56-amd64", "applied", None, None, 10, 0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA, server certificate, server key) for 127.0.0.1."""
    return private_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def hostile(tls: tuple[Path, Path, Path]) -> Iterator[HostileServer]:
    _, cert, key = tls
    with serving(HostileServer(cert, key)) as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[HostileServer]:
    """A plain-HTTP listener a redirect may point to; it must receive nothing."""
    with serving(HostileServer()) as server:
        yield server


def api(hostile: HostileServer, tls: tuple[Path, Path, Path], **limits: float) -> HttpServiceClient:
    return HttpServiceClient(hostile.url, ca_bundle=str(tls[0]), limits=Limits(**limits))


def fetcher(tls: tuple[Path, Path, Path], **limits: float) -> ServiceFetcher:
    return ServiceFetcher(FetchConfig(ca_bundle=tls[0], limits=Limits(**limits)), lambda: "cred")


# -- redirects -------------------------------------------------------------------------


def test_a_307_on_enrol_does_not_carry_the_token_anywhere(hostile, elsewhere, tls):
    target = f"{elsewhere.url}/v1/enrol"
    hostile.on("POST", "/v1/enrol", lambda h, r: h.redirect(307, target))
    with pytest.raises(ServiceError) as caught:
        api(hostile, tls).enrol(
            token=TOKEN, machine_id=MACHINE, hostname="h", kernel="k", architecture="amd64"
        )
    assert caught.value.code == "service-redirect"
    assert str(caught.value) == (
        "The patch service answered POST /v1/enrol with a redirect (HTTP 307), which the "
        "client never follows; set remote-server to the service's own address."
    )
    assert TOKEN not in str(caught.value)
    assert elsewhere.requests == []
    assert hostile.paths() == ["POST /v1/enrol"]


@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        (lambda c: c.renew(MACHINE, CREDENTIAL), "POST", f"/v1/machines/{MACHINE}/renew"),
        (lambda c: c.report(MACHINE, CREDENTIAL, REPORT), "POST", f"/v1/machines/{MACHINE}/"),
        (lambda c: c.deregister(MACHINE, CREDENTIAL), "DELETE", f"/v1/machines/{MACHINE}"),
    ],
    ids=["renew", "report", "de-enrol"],
)
def test_no_api_call_follows_a_redirect(hostile, elsewhere, tls, call, method, path):
    for status in (301, 302, 303, 307, 308):
        hostile.routes = []
        hostile.on("*", "/", lambda h, r, s=status: h.redirect(s, f"{elsewhere.url}{r.path}"))
        with pytest.raises(ServiceError) as caught:
            call(api(hostile, tls))
        assert caught.value.code == "service-redirect"
    assert elsewhere.requests == []
    assert len(hostile.requests) == 5
    assert all(r.method == method and r.path.startswith(path) for r in hostile.requests)


@pytest.mark.parametrize("where", ["http", "other-port"])
def test_a_fetch_never_follows_a_redirect_to_another_host_or_scheme(hostile, elsewhere, tls, where):
    with serving(HostileServer(tls[1], tls[2])) as other_https:
        target = elsewhere if where == "http" else other_https
        hostile.on("GET", "/v1/metadata/", lambda h, r: h.redirect(302, target.url + r.path))
        with pytest.raises(exceptions.DownloadError, match="redirects to another host"):
            fetcher(tls).download_bytes(f"{hostile.url}/v1/metadata/timestamp.json", 16384)
        assert target.requests == []
    assert elsewhere.requests == []


def test_a_fetch_follows_a_redirect_on_the_same_origin(hostile, tls):
    hostile.on("GET", "/v1/metadata/old", lambda h, r: h.redirect(301, "/v1/metadata/new"))
    hostile.on("GET", "/v1/metadata/new", lambda h, r: h.send_json(200, {"ok": 1}))
    data = fetcher(tls).download_bytes(f"{hostile.url}/v1/metadata/old", 1000)
    assert data == b'{"ok": 1}'
    assert [r.headers.get("Authorization") for r in hostile.requests] == ["Bearer cred"] * 2


# -- a server dripping one byte per read -----------------------------------------------


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_dripping_download_is_cut_at_its_deadline(hostile, tls, headers_too):
    hostile.on("GET", "/", lambda h, r: h.drip(0.2, headers_too=headers_too))
    limits = Limits(floor=1.0, min_rate=1000.0)
    started = time.monotonic()
    with pytest.raises(exceptions.SlowRetrievalError, match="did not finish within 2 seconds"):
        fetcher(tls, floor=1.0, min_rate=1000.0).download_bytes(
            f"{hostile.url}/v1/targets/patch.ko", 1000
        )
    elapsed = time.monotonic() - started
    assert limits.deadline(1000) == 2.0
    assert 1.9 <= elapsed < 4.0, elapsed


def test_the_deadline_grows_with_the_declared_length(hostile, tls):
    """A slow but steady transfer of a large patch is not cut: 4,000 bytes at about
    1,000 bytes a second get 1 + 4000/500 = 9 seconds."""
    payload = b"p" * 4000

    def steady(h: Handler, r: Request) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        for start in range(0, len(payload), 250):
            h.wfile.write(payload[start : start + 250])
            time.sleep(0.25)

    hostile.on("GET", "/", steady)
    data = fetcher(tls, floor=1.0, min_rate=500.0).download_bytes(
        f"{hostile.url}/v1/targets/big.ko", len(payload)
    )
    assert data == payload


def test_a_dripping_api_answer_is_cut_at_its_deadline(hostile, tls):
    hostile.on("POST", "/", lambda h, r: h.drip(0.2))
    started = time.monotonic()
    with pytest.raises(ServiceUnreachable) as caught:
        api(hostile, tls, floor=1.0, min_rate=4 * 1024 * 1024).report(MACHINE, CREDENTIAL, REPORT)
    elapsed = time.monotonic() - started
    assert str(caught.value) == (
        f"Cannot reach the patch service at {hostile.url} (the transfer did not finish "
        "within 2 seconds); check the network, the proxy settings and remote-server."
    )
    assert 1.9 <= elapsed < 4.0, elapsed


# -- 429 and 503 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "header", "wait", "when"),
    [
        (429, "120", 120.0, "in 120 seconds"),
        (503, "7", 7.0, "in 7 seconds"),
        (503, None, None, "later"),
        (429, "soon", None, "later"),
    ],
)
def test_busy_answers_carry_the_wait_the_service_asked_for(
    hostile, tls, status, header, wait, when
):
    headers = {"Retry-After": header} if header else {}
    hostile.on("POST", "/", lambda h, r: h.send_json(status, {"error": {}}, headers))
    with pytest.raises(ServiceBusy) as caught:
        api(hostile, tls).report(MACHINE, CREDENTIAL, REPORT)
    assert caught.value.retry_after == wait
    assert caught.value.retryable
    assert str(caught.value) == (
        f"The patch service at {hostile.url} is busy (HTTP {status}); livepatch checks "
        f"again {when}, or run the command again then."
    )


# -- text from the service -------------------------------------------------------------


def test_error_text_is_stripped_of_escapes_and_bounded(hostile, tls):
    code = "\x1b]0;owned\x07" + "x" * 5005
    message = "\x1b[2J\x1b[31mYour machine is \u202egnikcah\u202c\x1b[0m\n" + "y" * 2000
    hostile.on(
        "POST", "/", lambda h, r: h.send_json(400, {"error": {"code": code, "message": message}})
    )
    with pytest.raises(ServiceError) as caught:
        api(hostile, tls).report(MACHINE, CREDENTIAL, REPORT)
    error = caught.value
    assert error.code == "]0;owned" + "x" * 55 + "…"
    text = str(error)
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text and "\n" not in text
    assert "[2J[31mYour machine is gnikcah[0m yyy" in text
    assert len(text) < 500
