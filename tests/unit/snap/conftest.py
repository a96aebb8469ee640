"""Fixtures for the hook logic: a snap environment in tmp_path and the stand-in snapctl.

The stand-in (tests/demo/standin/snapctl) is a real executable with snapd's
rules; hooks call it through ``Snapctl`` exactly as they call snapd's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from livepatch.snap import hooks
from livepatch.snap.environment import SnapEnvironment
from livepatch.snap.snapctl import Snapctl
from tests.snap import STANDIN_SNAPCTL


class FakeSnapd:
    """The configuration side of snapd: `snap set` runs configure in a transaction."""

    def __init__(self, state: Path, env: SnapEnvironment) -> None:
        self.state = state
        self.env = env
        self.snapctl = Snapctl(str(STANDIN_SNAPCTL))

    def document(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.state.read_text())
        except FileNotFoundError:
            data = {"config": {}, "health": None, "calls": []}
        return data

    def write(self, document: dict[str, Any]) -> None:
        self.state.write_text(json.dumps(document))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.document()["config"])

    def snap_set(self, **values: Any) -> None:
        """Like `snap set livepatch KEY=VALUE…` (None unsets): the configure hook runs on
        the new values; if it fails, snapd keeps the old configuration."""
        document = self.document()
        old = dict(document["config"])
        for key, value in values.items():
            key = key.replace("_", "-")
            if value is None:
                document["config"].pop(key, None)
            else:
                document["config"][key] = value
        self.write(document)
        try:
            hooks.configure(self.env, self.snapctl)
        except BaseException:
            document = self.document()
            document["config"] = old
            self.write(document)
            raise

    @property
    def health(self) -> dict[str, str] | None:
        health: dict[str, str] | None = self.document()["health"]
        return health


@pytest.fixture
def env(tmp_path: Path) -> SnapEnvironment:
    return SnapEnvironment(
        snap=tmp_path / "snap",
        data=tmp_path / "var-snap" / "x2",
        common=tmp_path / "var-snap" / "common",
        revision="x2",
        version="0.1.0",
    )


@pytest.fixture
def snapd(tmp_path: Path, env: SnapEnvironment, monkeypatch: pytest.MonkeyPatch) -> FakeSnapd:
    state = tmp_path / "snapctl.json"
    monkeypatch.setenv("SNAPCTL_STATE", str(state))
    monkeypatch.delenv("LIVEPATCH_STATE_DIR", raising=False)
    return FakeSnapd(state, env)


class ControlServer:
    """A daemon's control socket that answers every request and records the commands."""

    def __init__(self, path: Path, lock: Path, answer: dict[str, Any] | None = None) -> None:
        import fcntl
        import socket
        import threading

        self.lock = lock.open("w")  # a running daemon holds its lock; commands look for it
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.path = path
        self.answer = answer or {"ok": True}
        self.commands: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.commands.append(json.loads(data)["command"])
                conn.sendall(json.dumps(self.answer).encode())

    def close(self) -> None:
        self.lock.close()
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def daemon(env: SnapEnvironment):  # type: ignore[no-untyped-def]
    env.paths.ensure()
    server = ControlServer(env.paths.control, env.paths.daemon_lock)
    yield server
    server.close()
