"""A real patch service (`livepatch-server serve`, SQLite, HTTPS on loopback) that a
test can stop and start again on the same port, with in-process admin commands."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from livepatch.server import admin
from tests.integration.server.live import free_port, self_signed
from tests.unit.kernel.fakes import make_module

SERVER = Path(sys.executable).with_name("livepatch-server")


@dataclass
class PatchService:
    base: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data = self.base / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self_signed(self.base)
        self.admin("keys", "init")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        """The certificate that signs the server's TLS certificate (our private CA)."""
        return self.cert

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
        return httpx.Client(base_url=self.url, verify=str(self.ca), timeout=10)

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
