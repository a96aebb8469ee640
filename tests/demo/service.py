"""The patch service side of the demo: a private TLS CA, `livepatch-admin`, `livepatch-server`.

Everything runs through the real commands an administrator types; the TLS
certificates come from a small private CA made here (the service's own key
directory, from `livepatch-admin keys init`, signs modules and metadata, not
TLS).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from livepatch.client.state import Report
from livepatch.server.config import DATA_DIR_ENV, sqlite_url

BIN = Path(sys.executable).parent
ADMIN = BIN / "livepatch-admin"
SERVER = BIN / "livepatch-server"


class ServiceError(Exception):
    """An admin command failed or the service did not start."""


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_tls(directory: Path, addresses: Sequence[str]) -> Tls:
    """A private CA and a server certificate for `addresses` (IPs) and localhost."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livepatch demo private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livepatch service")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "server-cert.pem", directory / "server-key.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key.touch(mode=0o600)
    tls.key.write_bytes(_key_pem(key))
    return tls


@dataclass(frozen=True)
class Admin:
    """`livepatch-admin …` as a subprocess in `workdir`, with the service's data directory
    in $LIVEPATCH_SERVER_DATA (as an administrator would export it)."""

    workdir: Path
    env: Mapping[str, str]

    @property
    def data_dir(self) -> Path:
        return self.workdir / "server"

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env, DATA_DIR_ENV: str(self.data_dir)}

    def run(self, *argv: str) -> str:
        process = subprocess.run(
            [str(ADMIN), *argv],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=False,
            env=self.environment(),
        )
        if process.returncode != 0:
            raise ServiceError(
                f"livepatch-admin {shlex.join(argv)} exited {process.returncode}: "
                f"{process.stderr.strip()}"
            )
        return process.stdout

    def json(self, *argv: str) -> Any:
        return json.loads(self.run(*argv, "--format", "json"))

    def start(self, *argv: str) -> subprocess.Popen[str]:
        """`livepatch-admin ARGV` in the background (`.communicate()` for its output)."""
        return subprocess.Popen(
            [str(ADMIN), *argv],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environment(),
        )

    def reported(self, machine_id: str, patch_id: str) -> Report | None:
        """The outcome `machine_id` reported for `patch_id`, as the service's database
        holds it (its latest row), in the client's report shape; None before any."""
        from sqlalchemy import select

        from livepatch.server.storage.database import Database
        from livepatch.server.storage.models import Report as Row

        database = Database(sqlite_url(self.data_dir))
        try:
            with database.transaction(readonly=True) as session:
                row = session.scalars(
                    select(Row)
                    .where(Row.machine_id == machine_id, Row.patch_id == patch_id)
                    .order_by(Row.received.desc(), Row.id.desc())
                    .limit(1)
                ).one_or_none()
        finally:
            database.dispose()
        if row is None:
            return None
        return Report(
            patch_id=row.patch_id,
            kernel=row.kernel,
            result=row.result,
            errno=row.errno,
            reason=row.reason,
            duration_ms=row.duration_ms,
            taint=row.taint,
            health=row.health,
            evidence=row.evidence,
        )


@dataclass
class RunningService:
    url: str
    port: int
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: Path


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_command(admin: Admin, tls: Tls, port: int) -> list[str]:
    """`livepatch-server serve` on 127.0.0.1 (its default host), paths relative to the workdir."""
    return [
        str(SERVER),
        "serve",
        "--port",
        str(port),
        "--tls-cert",
        str(tls.cert.relative_to(admin.workdir)),
        "--tls-key",
        str(tls.key.relative_to(admin.workdir)),
    ]


@contextlib.contextmanager
def running_service(admin: Admin, tls: Tls, *, timeout: float = 60.0) -> Iterator[RunningService]:
    """`livepatch-server serve` over HTTPS on loopback; stopped (TERM, then KILL) on exit."""
    port = _free_port()
    argv = serve_command(admin, tls, port)
    log = admin.workdir / "server.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            argv,
            cwd=admin.workdir,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=admin.environment(),
        )
    service = RunningService(f"https://127.0.0.1:{port}", port, argv, process, log)
    try:
        _wait_healthy(service, tls, timeout)
        yield service
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """TERM the server (its supervisor stops its workers), KILL its group if it lingers.

    TERM goes to the supervisor alone: workers signalled directly die before it
    asks them to, and it restarts them.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_healthy(service: RunningService, tls: Tls, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context(cafile=str(tls.ca))
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(f"livepatch-server exited: {service.log.read_text()[-2000:]}")
        try:
            answer = httpx.get(f"{service.url}/healthz", verify=context, timeout=2)
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise ServiceError(f"livepatch-server did not answer within {timeout:g} s.")
