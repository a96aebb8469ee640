"""The demo's guest half: a small agent the host drives over TCP (runs inside the VM).

    python -m tests.demo.guest HOST PORT

It connects to the host's controller (10.0.2.2 is the host's loopback under
qemu's user network) and answers one JSON request per line, in order:

- ``{"op": "run", "argv": [...], "env": {...}, "timeout": s}`` runs a command
  and answers ``{"returncode", "stdout", "stderr", "seconds"}``;
- ``{"op": "spawn", "name": n, "argv": [...], "env": {...}, "output": path}``
  starts a background process (output to `path`) and answers ``{"pid"}``;
- ``{"op": "write", "path": p, "text": t}`` writes a file;
- ``{"op": "exit"}`` (or the host hanging up) stops every spawned process and
  ends the agent, which ends the VM.

It imports only the standard library: Python imports are slow in the guest.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONNECT_FOR = 120.0
DHCP_GRACE = 10.0
# qemu's user network is always 10.0.2.0/24 with the host (gateway) at .2.
GUEST_ADDRESS = "10.0.2.15/24"
GATEWAY = "10.0.2.2"


def connect(host: str, port: int) -> socket.socket:
    """Connect to the host, configuring the network by hand if DHCP has not."""
    started = time.monotonic()
    configured = False
    while True:
        try:
            return socket.create_connection((host, port), timeout=10)
        except OSError:
            waited = time.monotonic() - started
            if waited > CONNECT_FOR:
                raise
            if waited > DHCP_GRACE and not configured:
                configure_network()
                configured = True
            time.sleep(0.5)


def configure_network() -> None:
    """The address and route virtme's DHCP client would have set."""
    interfaces = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    if not interfaces:
        return
    device = interfaces[0]
    for argv in (
        ["ip", "link", "set", device, "up"],
        ["ip", "addr", "add", GUEST_ADDRESS, "dev", device],
        ["ip", "route", "add", "default", "via", GATEWAY],
    ):
        subprocess.run(argv, check=False, capture_output=True)


class Agent:
    def __init__(self) -> None:
        self.spawned: dict[str, subprocess.Popen[bytes]] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "run":
            return self.run(request)
        if op == "spawn":
            return self.spawn(request)
        if op == "write":
            path = Path(request["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(request["text"])
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            process = subprocess.run(
                request["argv"],
                env={**os.environ, **request.get("env", {})},
                capture_output=True,
                text=True,
                errors="replace",
                timeout=request.get("timeout", 120),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return {
                "returncode": -1,
                "stdout": "",
                "stderr": f"{type(error).__name__}: {error}",
                "seconds": time.monotonic() - started,
            }
        return {
            "returncode": process.returncode,
            "stdout": process.stdout,
            "stderr": process.stderr,
            "seconds": time.monotonic() - started,
        }

    def spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        output = Path(request["output"])
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("wb") as stream:
            process = subprocess.Popen(
                request["argv"],
                env={**os.environ, **request.get("env", {})},
                stdin=subprocess.DEVNULL,
                stdout=stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.spawned[request["name"]] = process
        return {"pid": process.pid}

    def stop_all(self) -> None:
        for process in reversed(list(self.spawned.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.spawned.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def main(host: str, port: int) -> int:
    agent = Agent()
    connection = connect(host, port)
    connection.settimeout(None)
    reader = connection.makefile("r", encoding="utf-8")
    writer = connection.makefile("w", encoding="utf-8")
    try:
        writer.write(json.dumps({"hello": os.uname().release}) + "\n")
        writer.flush()
        for line in reader:
            request = json.loads(line)
            if request.get("op") == "exit":
                break
            writer.write(json.dumps(agent.handle(request)) + "\n")
            writer.flush()
    finally:
        agent.stop_all()
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
