"""Patch-service check-in throughput and latency on loopback, with nginx as the ceiling.

For SQLite and PostgreSQL, at 1,000 and 100,000 enrolled machines
(bulk-inserted), wrk drives `livepatch-server serve` with:

- the 304 path: GET timestamp.json with If-None-Match, no credential (what
  mirrors and up-to-date clients do; answered without the database);
- a check-in: the same with a machine credential (authenticated, counted);
- a report: POST /v1/machines/{id}/reports from random machines.

nginx serving the same timestamp.json statically (If-None-Match → 304) is
the ceiling. Everything started here is stopped here.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert
from tests.integration.postgres import postgres_server
from tests.integration.server.live import free_port, live_server

from bench.results import record
from livepatch.rollout import Stage, Tier
from livepatch.server import patches, tokens
from livepatch.server.config import load_config
from livepatch.server.service import Service
from livepatch.server.storage.models import Machine

DURATION = int(os.environ.get("BENCH_DURATION", "10"))
WARM_UP = 1
CONNECTIONS = 32
THREADS = 2
WORKERS = int(os.environ.get("BENCH_WORKERS", str(os.cpu_count() or 1)))
SIZES = tuple(int(n) for n in os.environ.get("BENCH_SIZES", "1000,100000").split(","))
KERNEL = "6.1.0-56-amd64"
MODULE = b"\x7fELF" + b"\0" * 60 + b"\0name=livepatch_bench\0"
_SETTINGS = ("BENCH_DURATION", "BENCH_WORKERS", "BENCH_SIZES")
COMMAND = " ".join(
    [*(f"{k}={os.environ[k]}" for k in _SETTINGS if k in os.environ), "python -m bench server"]
)


@dataclass(frozen=True)
class Figure:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    def row(self, label: str) -> str:
        return (
            f"| {label} | {self.requests_per_second:,.0f} | {self.p50_ms:.2f} | "
            f"{self.p99_ms:.2f} | {self.errors} |"
        )


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, *, script: Path | None = None, headers: tuple[str, ...] = ()) -> Figure:
    """One measured run, after a short unmeasured one that warms connections and caches."""
    options: list[str] = []
    for header in headers:
        options += ["-H", header]
    if script is not None:
        options += ["-s", str(script)]
    base = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", "--latency", *options]
    subprocess.run([*base, f"-d{WARM_UP}s", url], capture_output=True, check=True)
    output = subprocess.run(
        [*base, f"-d{DURATION}s", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {p: _ms(v, u) for p, v, u in re.findall(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", output)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    return Figure(rps, latency["50"], latency["99"], errors)


def populate(service: Service, machines: int) -> str:
    """Migrate, enrol `machines` machines in bulk (credential bench-<i>), publish a patch."""
    service.database.migrate()
    now = datetime.now(UTC)
    with service.transaction() as session:
        token = tokens.create_token(session, tier=Tier.COMMUNITY, machines=machines, now=now)
    rows = [
        {
            "machine_id": f"m-{i}",
            "token_id": token.info.id,
            "tier": "community",
            "hostname": f"host-{i}",
            "kernel": KERNEL,
            "architecture": "amd64",
            "credential_digest": hashlib.sha256(f"bench-{i}".encode()).hexdigest(),
            "credential_expires": now + timedelta(days=30),
            "enrolled": now,
            "last_seen": now,
        }
        for i in range(machines)
    ]
    for start in range(0, machines, 10_000):
        with service.transaction() as session:
            session.execute(insert(Machine), rows[start : start + 10_000])
    info = patches.publish(
        service,
        patches.Publication(
            MODULE, [KERNEL], ["CVE-2024-1086"], patches.Severity.HIGH, "bench", {}
        ),
    )
    # At stage `all` every machine's report counts (in canary most would be refused).
    patches.promote(service, info.patch_id, Stage.ALL)
    return info.patch_id


UNLIMITED_REPORTS = """\
# The benchmark measures throughput, not the rate limits: lift them.
[limits]
report_per_address = {per_second = 1e9, burst = 1000000000}
report_per_credential = {per_second = 1e9, burst = 1000000000}
report_per_token_max = {per_second = 1e9, burst = 1000000000}
report_per_token_slot = {per_second = 1e9, burst = 1000000000}
"""


def report_script(directory: Path, machines: int, patch_id: str) -> Path:
    body = json.dumps(
        {
            "patch_id": patch_id,
            "kernel": KERNEL,
            "result": "applied",
            "errno": None,
            "reason": None,
            "duration_ms": 12,
            "taint": 0,
        }
    )
    script = directory / "report.lua"
    script.write_text(
        "math.randomseed(os.time())\n"
        "request = function()\n"
        f"  local i = math.random(0, {machines - 1})\n"
        '  local headers = {["Authorization"] = "Bearer bench-" .. i,\n'
        '                   ["Content-Type"] = "application/json"}\n'
        f"  return wrk.format('POST', '/v1/machines/m-' .. i .. '/reports', headers, '{body}')\n"
        "end\n"
    )
    return script


def checkin_script(directory: Path, machines: int, etag: str) -> Path:
    script = directory / "checkin.lua"
    script.write_text(
        "math.randomseed(os.time())\n"
        "request = function()\n"
        f"  local i = math.random(0, {machines - 1})\n"
        '  local headers = {["Authorization"] = "Bearer bench-" .. i,\n'
        f"                   [\"If-None-Match\"] = '{etag}'}}\n"
        "  return wrk.format('GET', '/v1/metadata/timestamp.json', headers)\n"
        "end\n"
    )
    return script


@contextlib.contextmanager
def nginx(root: Path, directory: Path) -> Iterator[str]:
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(
        f"daemon off;\nworker_processes {WORKERS};\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/nginx-error.log;\nevents {{ worker_connections 1024; }}\n"
        "http {\n  access_log off;\n"
        f"  client_body_temp_path {directory}/body;\n  proxy_temp_path {directory}/proxy;\n"
        f"  fastcgi_temp_path {directory}/fcgi;\n  uwsgi_temp_path {directory}/uwsgi;\n"
        f"  scgi_temp_path {directory}/scgi;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n"
        f"    location /v1/metadata/ {{ alias {root}/; etag on; }}\n  }}\n}}\n"
    )
    process = subprocess.Popen(
        ["nginx", "-c", str(config), "-e", str(directory / "err.log")], start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{url}/v1/metadata/timestamp.json", timeout=1)
                break
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def measure(database: str, url: str, machines: int, scratch: Path) -> dict[str, Figure]:
    data = scratch / f"{database}-{machines}"
    data.mkdir(parents=True, exist_ok=True)
    (data / "config.toml").write_text(UNLIMITED_REPORTS)
    service = Service(load_config(data, url))
    try:
        patch_id = populate(service, machines)
    finally:
        service.close()
    figures: dict[str, Figure] = {}
    with live_server(data, url, tls=False, workers=WORKERS) as server:
        timestamp = f"{server.url}/v1/metadata/timestamp.json"
        etag = httpx.get(timestamp).headers["etag"]
        figures["304, anonymous"] = wrk(timestamp, headers=(f"If-None-Match: {etag}",))
        figures["304, check-in"] = wrk(timestamp, script=checkin_script(data, machines, etag))
        figures["report POST"] = wrk(server.url, script=report_script(data, machines, patch_id))
    # The ceiling right after this group's runs, so that other load on the machine
    # weighs on both sides of each ratio alike. nginx's workers run as www-data:
    # give them a readable copy of the same file.
    static_dir = Path(tempfile.mkdtemp(prefix="livepatch-nginx-"))
    static_dir.chmod(0o755)
    (static_dir / "metadata").mkdir(mode=0o755)
    shutil.copy(data / "blobs" / "metadata" / "timestamp.json", static_dir / "metadata")
    (static_dir / "metadata" / "timestamp.json").chmod(0o644)
    with nginx(static_dir / "metadata", static_dir) as base:
        static = f"{base}/v1/metadata/timestamp.json"
        nginx_etag = httpx.get(static).headers["etag"]
        figures[CEILING] = wrk(static, headers=(f"If-None-Match: {nginx_etag}",))
        # The same requests as the check-in run (wrk's Lua script builds each one, which
        # costs wrk CPU on the same cores): nginx ignores the credential.
        script = checkin_script(static_dir, machines, nginx_etag)
        figures[SCRIPTED_CEILING] = wrk(static, script=script)
    shutil.rmtree(static_dir, ignore_errors=True)
    return figures


CEILING = "nginx, the same timestamp.json, 304: ceiling"
SCRIPTED_CEILING = "nginx, the same, with the check-in run's requests: ceiling"


def http_implementation() -> str:
    """What uvicorn will use: httptools+uvloop when installed (uvicorn[standard]), else h11."""
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def main() -> None:
    if shutil.which("wrk") is None or shutil.which("nginx") is None:
        raise SystemExit("bench_server needs wrk and nginx: run `make setup`.")
    scratch = Path(tempfile.mkdtemp(prefix="livepatch-bench-"))
    results: dict[tuple[str, int], dict[str, Figure]] = {}
    try:
        for machines in SIZES:
            url = f"sqlite:///{scratch}/sqlite-{machines}/livepatch.db"
            results[("SQLite", machines)] = measure("sqlite", url, machines, scratch)
            print(f"sqlite {machines}: {results[('SQLite', machines)]}", flush=True)
        with postgres_server(durable=True) as postgres:
            for machines in SIZES:
                url = postgres.create_database("bench")
                results[("PostgreSQL", machines)] = measure("postgres", url, machines, scratch)
                print(f"postgres {machines}: {results[('PostgreSQL', machines)]}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    http = http_implementation()
    lines = [
        f"wrk {THREADS} threads, {CONNECTIONS} connections, {DURATION} s per run after "
        f"{WARM_UP} s of warm-up; "
        f"`livepatch-server serve` with {WORKERS} uvicorn workers ({http}, no TLS) on loopback; "
        "PostgreSQL 15 with fsync on; SQLite in WAL mode. Each group ends with the ceiling, "
        f"nginx ({WORKERS} workers) serving the same timestamp.json statically "
        "(If-None-Match → 304), so that the ratios compare runs made minutes apart at most; "
        "once with the anonymous run's fixed request and once with the check-in run's Lua "
        "script (a random machine's credential per request), whose request building costs "
        "wrk CPU on the same 2 cores: the check-in's aim is judged against the latter.",
        "",
        "| run | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for (database, machines), figures in results.items():
        for label, figure in figures.items():
            lines.append(figure.row(f"{database}, {machines:,} machines, {label}"))
    lines.append("")
    for (database, machines), figures in results.items():
        ceiling = figures[CEILING].requests_per_second
        scripted = figures[SCRIPTED_CEILING].requests_per_second
        anonymous = figures["304, anonymous"].requests_per_second / ceiling
        checkin = figures["304, check-in"].requests_per_second / scripted
        lines.append(
            f"- vs nginx, {database} {machines:,}: 304 path {anonymous:.0%}; credentialed "
            f"check-in {checkin:.0%} of nginx under the same requests "
            f"({figures['304, check-in'].requests_per_second / ceiling:.0%} of the plain one)"
        )
    body = "\n".join(lines)
    print(body)
    record("bench_server", COMMAND, body)
