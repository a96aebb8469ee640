"""A real patch service (`livepatch-server serve`, SQLite, HTTPS on loopback) that a
test can stop and start again on the same port, with in-process admin commands."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from livepatch.server import admin
from tests.integration.server.live import free_port
from tests.unit.kernel.fakes import make_module

SERVER = Path(sys.executable).with_name("livepatch-server")
QEMU_HOST = "10.0.2.2"
"""The address of the host seen from a qemu guest on user networking (slirp)."""


def _pem(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def private_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it issued for 127.0.0.1, localhost and
    the host's address on qemu user networking.

    Returns (CA certificate, server certificate, server key) as PEM files.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "livepatch test private CA")])
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
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    # the host as a qemu user-network guest reaches it
                    x509.IPAddress(ipaddress.ip_address(QEMU_HOST)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        _pem(directory / "ca.pem", ca.public_bytes(pem)),
        _pem(directory / "tls-cert.pem", server.public_bytes(pem)),
        _pem(directory / "tls-key.pem", key_pem, 0o600),
    )


@dataclass
class PatchService:
    """`ca` is the private CA's certificate: what clients set as ca-certs."""

    base: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data = self.base / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = private_ca(self.base)
        self.admin("keys", "init")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None, "already running"
        log = (self.base / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(SERVER),
                "serve",
                "--data-dir",
                str(self.data),
                "--port",
                str(self.port),
                "--tls-cert",
                str(self.cert),
                "--tls-key",
                str(self.key),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http().get("/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")[-4000:]

    def http(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def admin(self, *argv: str) -> str:
        """`livepatch-admin ARGV --data-dir DATA` in this process; its stdout."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = admin.main([*argv, "--data-dir", str(self.data)])
        if code != 0:
            raise AssertionError(
                f"livepatch-admin {' '.join(argv)} exited {code}: {err.getvalue()}"
            )
        return out.getvalue()

    def admin_json(self, *argv: str) -> Any:
        return json.loads(self.admin(*argv, "--format", "json"))

    def token(self, machines: int = 3) -> str:
        return str(self.admin_json("tokens", "create", "--machines", str(machines))["token"])

    def publish(
        self,
        kernel: str,
        module_name: str,
        cves: tuple[str, ...] = ("CVE-2024-1086",),
        *,
        module: Path | None = None,
        promote: bool = True,
    ) -> str:
        """Sign and publish a module for `kernel`, rolled out to all machines; its patch id."""
        if module is None:
            module = self.base / f"{module_name}.ko"
            module.write_bytes(make_module(module_name, vermagic=f"{kernel} SMP preempt"))
        published = self.admin_json(
            "publish",
            "--no-preflight",
            str(module),
            "--kernel",
            kernel,
            "--cve",
            *cves,
            "--severity",
            "high",
            "--description",
            f"{module_name} fixes",
        )
        patch_id = str(published["patch_id"])
        if promote:
            self.admin("patches", "promote", patch_id, "--to", "all")
        return patch_id

    def reports(self, patch_id: str) -> tuple[int, int]:
        """How many machines reported `patch_id` applied, and how many failed."""
        shown = self.admin_json("patches", "show", patch_id)
        rows = shown["reports"]
        return sum(r["applied"] for r in rows), sum(r["failed"] for r in rows)
