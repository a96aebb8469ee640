"""The host's handle on the demo VM: boot it in the background, then drive its agent.

The VM (tests.vm.run_in_vm, qemu user network) runs tests/demo/guest.py, which
connects back to a controller socket on the host's loopback and executes the
commands sent to it. Closing the controller makes the agent stop what it
spawned and exit, which powers the VM off.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.vm import VmResult, run_in_vm
from tests.vm.qemu import REPO, VENV_BIN

HOST_FROM_GUEST = "10.0.2.2"
"""The host's loopback as the guest sees it under qemu's user network."""


Launcher = Callable[[str], VmResult]


class GuestError(Exception):
    """The VM did not come up, or went away, or a command in it failed."""


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def check(self) -> Command:
        if self.returncode != 0:
            raise GuestError(
                f"`{shlex.join(self.argv)}` exited {self.returncode} in the VM:\n"
                f"{self.stdout}{self.stderr}"
            )
        return self


class GuestVm:
    """One VM running the agent; use as a context manager (`with GuestVm(...) as vm`)."""

    def __init__(
        self,
        *,
        append: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        launcher: Launcher | None = None,
        agent_host: str = HOST_FROM_GUEST,
    ) -> None:
        """`launcher(command)` runs the agent's shell command (default: in a VM)."""
        self.append = list(append)
        self.env = dict(env or {})
        self.timeout = timeout
        self.launcher = launcher or self._in_vm
        self.agent_host = agent_host
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.result: VmResult | None = None
        self.error: BaseException | None = None
        self.release = ""
        self._connection: socket.socket | None = None
        self._reader: Any = None
        self._thread = threading.Thread(target=self._boot, name="demo-vm", daemon=True)
        self.booted_at = 0.0

    def __enter__(self) -> GuestVm:
        self.booted_at = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _in_vm(self, command: str) -> VmResult:
        return run_in_vm(
            command, append=self.append, timeout=self.timeout, env=self.env, network="user"
        )

    def _boot(self) -> None:
        command = (
            f"cd {shlex.quote(str(REPO))} && "
            f"{shlex.quote(str(VENV_BIN / 'python'))} -m tests.demo.guest "
            f"{self.agent_host} {self.port}"
        )
        try:
            self.result = self.launcher(command)
        except BaseException as error:  # reported by wait_ready / request
            self.error = error

    def _vm_output(self) -> str:
        if self.result is not None:
            return self.result.describe()
        if self.error is not None:
            return str(self.error)
        return "(the VM is still running)"

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Wait for the agent to connect; the seconds since the boot started."""
        deadline = time.monotonic() + timeout
        self.listener.settimeout(1.0)
        while self._connection is None:
            if not self._thread.is_alive():
                raise GuestError(f"The VM ended before its agent connected.\n{self._vm_output()}")
            if time.monotonic() > deadline:
                raise GuestError(f"The VM's agent did not connect within {timeout:g} s.")
            with contextlib.suppress(TimeoutError):
                connection, _ = self.listener.accept()
                connection.settimeout(self.timeout)
                self._connection = connection
                self._reader = connection.makefile("r", encoding="utf-8")
        hello = self._receive()
        self.release = str(hello.get("hello", ""))
        return time.monotonic() - self.booted_at

    def _receive(self) -> dict[str, Any]:
        line = self._reader.readline() if self._reader is not None else ""
        if not line:
            self._thread.join(timeout=60)
            raise GuestError(f"The VM's agent hung up.\n{self._vm_output()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def request(self, **request: Any) -> dict[str, Any]:
        if self._connection is None:
            raise GuestError("The VM's agent is not connected; call wait_ready() first.")
        self._connection.sendall((json.dumps(request) + "\n").encode())
        answer = self._receive()
        if "error" in answer:
            raise GuestError(f"The VM's agent refused {request.get('op')}: {answer['error']}")
        return answer

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 180
    ) -> Command:
        answer = self.request(op="run", argv=list(argv), env=dict(env or {}), timeout=timeout)
        return Command(
            tuple(argv),
            int(answer["returncode"]),
            str(answer["stdout"]),
            str(answer["stderr"]),
            float(answer["seconds"]),
        )

    def sh(self, script: str, *, timeout: float = 60) -> Command:
        return self.run(["sh", "-c", script], timeout=timeout)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        output: Path,
        env: Mapping[str, str] | None = None,
    ) -> int:
        answer = self.request(
            op="spawn", name=name, argv=list(argv), env=dict(env or {}), output=str(output)
        )
        return int(answer["pid"])

    def write(self, path: Path, text: str) -> None:
        self.request(op="write", path=str(path), text=text)

    def close(self, timeout: float = 90.0) -> None:
        """Ask the agent to stop, then wait for the VM to power off.

        A VM whose agent never connected is not waited for long: the caller
        kills what is left (see tests.demo.processes).
        """
        connected = self._connection is not None
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.sendall(b'{"op": "exit"}\n')
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None
        self.listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout if connected else 5.0)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
