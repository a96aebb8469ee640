"""The client against the real patch service over HTTPS on loopback, with the kernel
helper's fake kernel tree: enrol, verify, apply, report, de-enrol, and errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from livepatch.client import commands
from livepatch.client.errors import TlsFailure, UnknownToken
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.state import StateFile
from livepatch.client.wiring import default_runtime
from livepatch.kernel import LivepatchDriver
from tests.unit.kernel.fakes import FakeKernel, FakeSyscalls, make_module

BIN = Path(sys.executable).parent
KERNEL = "6.1.0-56-amd64"


def admin(data: Path, *args: str) -> str:
    result = subprocess.run(
        [BIN / "livepatch-admin", *args, "--data-dir", str(data)],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("service")
    data = base / "server"
    subprocess.run(
        [BIN / "livepatch-admin", "keys", "init", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(base / "tls.key"),
            "-out",
            str(base / "tls.crt"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    module = base / "lp.ko"
    module.write_bytes(make_module("lp_cve_2024_1086"))
    admin(
        data,
        "publish",
        str(module),
        "--kernel",
        KERNEL,
        "--cve",
        "CVE-2024-1086",
        "--severity",
        "high",
        "--description",
        "nf_tables use-after-free",
    )
    admin(data, "patches", "promote", f"lp-{KERNEL}-1", "--to", "all")
    port = free_port()
    server = subprocess.Popen(
        [
            BIN / "livepatch-server",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--tls-cert",
            str(base / "tls.crt"),
            "--tls-key",
            str(base / "tls.key"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.1)
    yield {"url": f"https://127.0.0.1:{port}", "data": data, "ca": base / "tls.crt"}
    server.terminate()
    server.wait(10)


def token(service) -> str:
    return json.loads(admin(service["data"], "tokens", "create", "--format", "json"))["token"]


@pytest.fixture
def client(tmp_path, service):
    root = tmp_path / "kernel"
    root.mkdir()
    fake = FakeKernel(root)
    driver = LivepatchDriver(root, syscalls=FakeSyscalls(fake), clock=fake.clock, sleep=fake.sleep)
    rt = default_runtime({"LIVEPATCH_STATE_DIR": str(tmp_path / "client")})
    rt = replace(rt, kernel=KernelAdapter(root, driver=driver))
    commands.set_config(rt.paths, [f"remote-server={service['url']}", f"ca-certs={service['ca']}"])
    return rt, fake


def test_enrol_verify_apply_report_and_de_enrol(client, service):
    rt, fake = client
    result = commands.enable(rt, token(service))
    assert result.outcome is not None and result.outcome.error is None
    assert [name for name, _ in fake.finit_calls] == ["lp_cve_2024_1086"]
    doc = commands.status(rt)
    entry = doc["Status"][0]
    assert entry["Livepatch"]["State"] == "applied"
    assert entry["Livepatch"]["Fixes"][0] == {
        "Name": "cve-2024-1086",
        "Description": entry["Livepatch"]["Fixes"][0]["Description"],
        "Bug": "",
        "Patched": True,
        "Severity": entry["Livepatch"]["Fixes"][0]["Severity"],
    }
    assert StateFile(rt.paths.state).load().pending_reports == ()  # the report was accepted
    shown = admin(service["data"], "patches", "show", f"lp-{KERNEL}-1", "--format", "json")
    assert "applied" in shown
    disabled = commands.disable(rt, unload=False)
    assert disabled.service_error is None
    assert disabled.kept == ("lp_cve_2024_1086",)
    assert StateFile(rt.paths.state).load().enrolment is None


def test_bad_token_is_unknown_auth_token(client):
    rt, _ = client
    with pytest.raises(UnknownToken, match="Unknown Auth-Token"):
        commands.enable(rt, "0" * 32)


def test_tls_failure_without_the_private_ca(client, service):
    rt, _ = client
    commands.set_config(rt.paths, ["ca-certs="])
    with pytest.raises(TlsFailure, match="TLS verification"):
        commands.enable(rt, token(service))
