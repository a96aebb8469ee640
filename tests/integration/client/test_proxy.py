"""Proxies over real sockets: both HTTP clients send through the configured proxy,
except to hosts the configured no-proxy list names; environment proxies still work.

The origin and the proxy both listen on loopback. Requests for the made-up host
``proxied.test`` can only succeed through the proxy (which forwards them to the
origin); requests for ``127.0.0.1`` are listed in no-proxy and must reach the
origin directly, the proxy never seeing them.
"""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from livepatch.client.api import HttpServiceClient
from livepatch.client.config import Config, assign
from livepatch.client.state import Credential
from livepatch.trust.fetcher import FetchConfig, ServiceFetcher
from tests.integration.client.proxy import RecordingProxy, running

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
CREDENTIAL = Credential("machine-credential", datetime.now(UTC) + timedelta(days=1))


class Origin:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        """(method, request target, Host header) for each request received."""


def _origin_handler(origin: Origin) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            origin.seen.append((self.command, self.path, self.headers.get("Host", "")))
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def origin() -> Iterator[tuple[str, Origin]]:
    origin = Origin()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _origin_handler(origin))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", origin
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(origin: tuple[str, Origin]) -> Iterator[tuple[str, RecordingProxy]]:
    host, port = origin[0].split(":")
    recording = RecordingProxy(upstream=(host, int(port)))
    with running(recording) as url:
        yield url, recording


def settings(proxy_url: str, no_proxy: str = "127.0.0.1") -> dict[str, str]:
    """The proxies as `livepatch config` would store and pass them."""
    config = assign(Config(), [("http-proxy", proxy_url), ("no-proxy", no_proxy)])
    return config.proxies()


def via_api(base: str, proxies: dict[str, str]) -> None:
    HttpServiceClient(base, proxies=proxies).deregister("m-1", CREDENTIAL)


def via_fetcher(base: str, proxies: dict[str, str]) -> None:
    fetcher = ServiceFetcher(FetchConfig(proxies=proxies), credential=lambda: "c")
    assert b"".join(fetcher.fetch(f"{base}/v1/metadata/timestamp.json")) == b"{}"


CLIENTS: list[Callable[[str, dict[str, str]], None]] = [via_api, via_fetcher]


@pytest.mark.parametrize("send", CLIENTS, ids=["api", "fetcher"])
def test_configured_proxy_carries_hosts_not_in_no_proxy(
    send: Callable[[str, dict[str, str]], None],
    origin: tuple[str, Origin],
    proxy: tuple[str, RecordingProxy],
) -> None:
    proxy_url, recording = proxy
    _, served = origin
    send("http://proxied.test", settings(proxy_url))
    assert len(recording.seen) == 1
    assert recording.seen[0].split(" ")[1].startswith("http://proxied.test/v1/")
    assert [host for _, _, host in served.seen] == ["proxied.test"]


@pytest.mark.parametrize("send", CLIENTS, ids=["api", "fetcher"])
def test_no_proxy_host_is_reached_directly(
    send: Callable[[str, dict[str, str]], None],
    origin: tuple[str, Origin],
    proxy: tuple[str, RecordingProxy],
) -> None:
    address, served = origin
    proxy_url, recording = proxy
    send(f"http://{address}", settings(proxy_url))
    assert recording.seen == []
    [(_, target, host)] = served.seen
    assert target.startswith("/v1/") and host == address  # origin-form: not via a proxy


@pytest.mark.parametrize("send", CLIENTS, ids=["api", "fetcher"])
def test_no_proxy_lists_names_and_networks(
    send: Callable[[str, dict[str, str]], None],
    origin: tuple[str, Origin],
    proxy: tuple[str, RecordingProxy],
) -> None:
    address, served = origin
    port = address.rpartition(":")[2]
    proxy_url, recording = proxy
    proxies = settings(proxy_url, no_proxy="localhost, .internal,127.0.0.0/8")
    send("http://proxied.test", proxies)
    send(f"http://{address}", proxies)
    send(f"http://localhost:{port}", proxies)
    assert len(recording.seen) == 1
    assert [host for _, _, host in served.seen] == ["proxied.test", address, f"localhost:{port}"]


@pytest.mark.parametrize("send", CLIENTS, ids=["api", "fetcher"])
def test_environment_proxy_still_works(
    send: Callable[[str, dict[str, str]], None],
    origin: tuple[str, Origin],
    proxy: tuple[str, RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address, served = origin
    proxy_url, recording = proxy
    monkeypatch.setenv("http_proxy", proxy_url)
    send("http://proxied.test", {})
    assert len(recording.seen) == 1
    # the configured no-proxy list keeps the environment's proxy away too
    send(f"http://{address}", {"no_proxy": "127.0.0.1"})
    assert len(recording.seen) == 1
    assert [host for _, _, host in served.seen] == ["proxied.test", address]


@pytest.mark.parametrize("send", CLIENTS, ids=["api", "fetcher"])
@pytest.mark.parametrize("password", ["p#ss/w?o@rd", "50%off", "p%40ss"])
def test_a_proxy_password_with_url_delimiters_reaches_the_proxy_whole(
    send: Callable[[str, dict[str, str]], None],
    proxy: tuple[str, RecordingProxy],
    password: str,
) -> None:
    proxy_url, recording = proxy
    with_password = proxy_url.replace("http://", f"http://alice:{password}@")
    send("http://proxied.test", settings(with_password))
    [header] = recording.credentials
    scheme, _, encoded = header.partition(" ")
    sent = base64.b64decode(encoded).decode()
    expected = "p@ss" if password == "p%40ss" else password  # %XX is an escape
    assert (scheme, sent) == ("Basic", f"alice:{expected}")
