"""Size, time, connection and rate limits of a real `livepatch-server serve` (issue 16).

One server with short deadlines and small rates (config.toml [limits]),
plain HTTP on loopback so that raw sockets can misbehave precisely.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server.live import LiveServer, live_server

KERNEL = "6.1.0-56-amd64"
HEADER_TIMEOUT = 1.0
CONFIG = f"""\
[server]
metrics_token = "scrape-secret"

[limits]
header_timeout = {HEADER_TIMEOUT}
body_timeout = 2.0
enrol_per_address = {{per_second = 0.2, burst = 5}}
report_per_credential = {{per_second = 0.1, burst = 3}}
report_per_token_slot = {{per_second = 0.01, burst = 2}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "config.toml").write_text(CONFIG)
    url = f"sqlite:///{data_dir}/livepatch.db"
    with live_server(data_dir, url, tls=False) as live:
        yield live


def address(server: LiveServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def exchange(server: LiveServer, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(address(server), timeout=timeout) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(request)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_a_50_mb_body_is_refused_with_413_without_growing_the_worker(server: LiveServer) -> None:
    before = rss_kib(server.process.pid)
    body = b"x" * (50 * 1024 * 1024)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(4):
            response = client.post(
                "/v1/anything", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "body-too-large"
    # Streamed without a length (chunked): refused as soon as it passes the limit.
    answer = exchange(
        server,
        b"POST /v1/machines/m/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer x\r\nContent-Type: application/json\r\n\r\n"
        + b"".join(b"100000\r\n" + b"y" * 0x100000 + b"\r\n" for _ in range(3)),
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert rss_kib(server.process.pid) - before < 20 * 1024


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident size since the last ``reset_peak_rss``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def test_an_admin_upload_without_a_valid_key_is_refused_before_its_body_is_read(
    server: LiveServer,
) -> None:
    """23 MiB (under the admin limit) to the upload route: 401 whatever the key, and the
    worker's peak memory does not grow by the body's size (it was read, parsed as JSON
    and only then refused)."""
    pid = server.process.pid
    body = b'{"module_base64": "' + b"A" * (23 * 1024 * 1024) + b'"}'
    forged = "lpadm_" + "x" * 43
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for key in (None, forged):
            reset_peak_rss(pid)
            before = peak_rss_kib(pid)
            headers = {"content-type": "application/json"}
            if key is not None:
                headers["X-Admin-Key"] = key
            response = client.post("/v1/admin/patches", content=body, headers=headers)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthenticated"
            assert peak_rss_kib(pid) - before < 8 * 1024
        # With a valid key the body is read and validated (the module is too long: 422).
        key = server.admin_json("admins", "create", "uploader", "--role", "operator")["key"]
        response = client.post(
            "/v1/admin/patches",
            content=body,
            headers={"content-type": "application/json", "X-Admin-Key": key},
        )
        assert response.status_code == 422, response.text
        assert "module_base64" in response.json()["error"]["message"]


def test_the_admin_api_reads_bodies_up_to_its_own_limit(server: LiveServer) -> None:
    """Published modules travel base64-encoded to /v1/admin: 2 MiB is refused for want
    of an API key (before it is read), 30 MiB for its size."""
    body = b'{"module_base64": "' + b"A" * (2 * 1024 * 1024) + b'"}'
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post(
            "/v1/admin/patches", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 401, response.text
        response = client.post(
            "/v1/admin/patches",
            content=b"x" * (30 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body-too-large"


def test_a_5_mb_header_is_refused_with_431(server: LiveServer) -> None:
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (5 * 1024 * 1024) + b"\r\n\r\n"
    )
    answer = exchange(server, request)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b"headers-too-large" in answer


def test_slow_loris_connections_are_closed_after_the_deadline_while_clients_are_served(
    server: LiveServer,
) -> None:
    host, port = address(server)
    half_open = []
    for n in range(100):
        connection = socket.create_connection((host, port), timeout=10)
        # Some send nothing, some half a request line, some headers without the end.
        connection.sendall(
            [b"", b"GET /healthz HT", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"][n % 3]
        )
        half_open.append(connection)
    try:
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < HEADER_TIMEOUT
        time.sleep(HEADER_TIMEOUT + 1.5)
        for connection in half_open:
            connection.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert connection.recv(1024) == b""  # closed by the server
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        for connection in half_open:
            connection.close()


def test_a_body_that_never_ends_is_closed_after_the_body_deadline(server: LiveServer) -> None:
    with socket.create_connection(address(server), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/anything HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Content-Type: application/json\r\n\r\n{"
        )
        started = time.monotonic()
        try:
            while connection.recv(1024):
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 5


def enrol_body(token: str) -> dict[str, str]:
    return {
        "token": token,
        "machine_id": uuid.uuid4().hex,
        "hostname": "h",
        "kernel": KERNEL,
        "architecture": "amd64",
    }


def test_enrolment_and_reports_are_rate_limited_with_retry_after(server: LiveServer) -> None:
    token = server.admin_json("tokens", "create", "--machines", "50")["token"]
    statuses = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(7):
            response = client.post("/v1/enrol", json=enrol_body(token))
            statuses.append(response.status_code)
            if response.status_code == 201:
                machine = response.json()
        assert statuses[:5] == [201] * 5
        assert statuses[5:] == [429, 429]
        assert response.json()["error"]["code"] == "rate-limited"
        assert 1 <= int(response.headers["retry-after"]) <= 5
        report = {
            "patch_id": "lp-none",
            "kernel": KERNEL,
            "result": "applied",
            "duration_ms": 1,
            "taint": 0,
        }
        auth = {"Authorization": f"Bearer {machine['credential']}"}
        path = f"/v1/machines/{machine['machine_id']}/reports"
        answers = [client.post(path, json=report, headers=auth).status_code for _ in range(4)]
        assert answers == [404, 404, 404, 429]


def test_reports_are_limited_per_token_across_its_machines(server: LiveServer) -> None:
    """Two machines of a 2-slot token share 2 x 2 reports at once (0.02/s after that),
    although each machine's credential alone would allow 3."""
    token = server.admin_json("tokens", "create", "--machines", "2")["token"]
    # From an address of its own: the enrolment test may have used this one's budget.
    own_address = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.url, timeout=10, transport=own_address) as client:
        machines = [client.post("/v1/enrol", json=enrol_body(token)).json() for _ in range(2)]
        report = {
            "patch_id": "lp-none",
            "kernel": KERNEL,
            "result": "applied",
            "duration_ms": 1,
            "taint": 0,
        }
        answers = []
        for machine, times in zip(machines, (3, 2), strict=True):
            auth = {"Authorization": f"Bearer {machine['credential']}"}
            path = f"/v1/machines/{machine['machine_id']}/reports"
            for _ in range(times):
                response = client.post(path, json=report, headers=auth)
                answers.append(response.status_code)
    assert answers == [404, 404, 404, 404, 429]
    assert response.json()["error"]["code"] == "rate-limited"
    assert 40 <= int(response.headers["retry-after"]) <= 50  # a token a 50 s


def test_the_data_directory_and_database_are_private(server: LiveServer) -> None:
    # The fixture created the directory 0755 on purpose: serve made it private.
    assert stat.S_IMODE(server.data_dir.stat().st_mode) & 0o007 == 0
    assert stat.S_IMODE((server.data_dir / "livepatch.db").stat().st_mode) == 0o600


def test_keys_init_creates_a_private_data_directory(tmp_path: Path) -> None:
    from livepatch.server import admin

    data_dir = tmp_path / "fresh"
    old = os.umask(0o022)
    try:
        assert admin.main(["keys", "init", "--data-dir", str(data_dir)]) == 0
        assert admin.main(["tokens", "list", "--data-dir", str(data_dir)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "livepatch.db").stat().st_mode) == 0o600


def test_metrics_can_require_a_token(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthenticated"
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert right.status_code == 200
        assert "livepatch_enrolments_total" in right.text
