"""A real `livepatch-server serve` over TLS on loopback, for API tests and the benchmark."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from livepatch.server import admin
from livepatch.server.config import ServerConfig
from livepatch.server.metrics import Counts, read_directory

SERVER = Path(sys.executable).with_name("livepatch-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livepatch test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class LiveServer:
    data_dir: Path
    database_url: str
    url: str
    ca: Path
    process: subprocess.Popen[bytes]
    log: Path
    blobs: str | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        client = httpx.Client(base_url=self.url, verify=self.verify(), timeout=30, **kwargs)
        self.clients.append(client)
        return client

    def verify(self) -> ssl.SSLContext | bool:
        return (
            ssl.create_default_context(cafile=str(self.ca))
            if self.url.startswith("https")
            else False
        )

    def admin(self, *argv: str) -> str:
        """Run `livepatch-admin ARGV… --data-dir … --database …`; its stdout."""
        return run_admin(self.data_dir, self.database_url, argv, blobs=self.blobs)

    def admin_json(self, *argv: str) -> Any:
        return json.loads(self.admin(*argv, "--format", "json"))


def run_admin(
    data_dir: Path, database_url: str, argv: Sequence[str], *, blobs: str | None = None
) -> str:
    out = io.StringIO()
    err = io.StringIO()
    location = ["--data-dir", str(data_dir), "--database", database_url]
    if blobs is not None:
        location += ["--blobs", blobs]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = admin.main([*argv, *location])
    if code != 0:
        raise AssertionError(f"livepatch-admin {' '.join(argv)} exited {code}: {err.getvalue()}")
    return out.getvalue()


@contextlib.contextmanager
def live_server(
    data_dir: Path,
    database_url: str,
    *,
    tls: bool = True,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
    blobs: str | None = None,
    public_targets: bool = False,
) -> Iterator[LiveServer]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(SERVER),
        "serve",
        "--data-dir",
        str(data_dir),
        "--database",
        database_url,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if blobs is not None:
        argv += ["--blobs", blobs]
    if public_targets:
        argv.append("--public-targets")
    ca = Path()
    if tls:
        cert, key = self_signed(data_dir)
        argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
        ca = cert
    log = data_dir / "server.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            argv,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(extra_env or {})},
        )
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    server = LiveServer(data_dir, database_url, url, ca, process, log, blobs)
    try:
        _wait_ready(server)
        yield server
    finally:
        for client in server.clients:
            client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(server: LiveServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    verify = server.verify()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited: {server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/healthz", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not start: {server.log.read_text()[-3000:]}")


def worker_counts(server: LiveServer) -> list[Counts]:
    """Each worker process's counters, as it last shared them (about once a second)."""
    directory = ServerConfig(server.data_dir, server.database_url).metrics_dir
    return [counts for _, counts in read_directory(directory)]


def count(counts: Counts, name: str, **labels: str) -> float:
    return counts.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def wait_for_workers(server: LiveServer, workers: int = 2, timeout: float = 60.0) -> int:
    """Return once `workers` processes have each served a request; the requests made.

    The server is ready when its first worker answers; the others may still
    be starting. Each request (of timestamp.json) is on a new connection,
    which any worker may accept; the workers' counters tell which did.
    """
    made = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with httpx.Client(base_url=server.url, verify=server.verify(), timeout=30) as client:
            assert client.get("/v1/metadata/timestamp.json").status_code == 200
        made += 1
        served = [
            c
            for c in worker_counts(server)
            if count(c, "livepatch_static_requests_total", status="200")
        ]
        if len(served) >= workers:
            return made
        time.sleep(0.1)
    raise AssertionError(f"not {workers} workers answered: {server.log.read_text()[-3000:]}")


def wait_for_counts(
    server: LiveServer, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]
) -> list[Counts]:
    """The workers' counters once their sums are `expected` ({(name, labels): total})."""
    deadline = time.monotonic() + 30
    while True:
        workers = worker_counts(server)
        sums = {
            (name, labels): sum(c.get(name, {}).get(labels, 0.0) for c in workers)
            for name, labels in expected
        }
        if sums == expected:
            return workers
        if time.monotonic() > deadline:
            raise AssertionError(f"the workers counted {sums}, not {expected}: {workers}")
        time.sleep(0.1)
