"""The daemon's local control socket: one JSON request per connection, one JSON answer.

Requests: ``{"command": "refresh"}`` (check now, answer with the outcome),
``{"command": "reload"}`` (re-read config and state, reschedule),
``{"command": "status"}``. The socket lives in the state directory with mode
0600, so only root can use it; ``livepatch status`` reads the state file
instead and needs no socket.

The client side is blocking and imports no asyncio, to keep commands fast.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from livepatch.client.errors import DaemonUnavailable

MAX_MESSAGE = 4 * 1024 * 1024


class DaemonNotRunning(DaemonUnavailable):
    code = "daemon-not-running"


def request(path: Path, command: str, *, timeout: float = 900.0) -> dict[str, Any]:
    """Send `command` to the daemon and wait for its answer.

    Raises DaemonNotRunning when nobody listens (the caller may then do the work
    itself) and DaemonUnavailable when the daemon fails to answer in time.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise DaemonNotRunning("it is not running") from error
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        chunks = []
        size = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_MESSAGE:
                raise DaemonUnavailable("its answer was too large")
    except TimeoutError as error:
        raise DaemonUnavailable(f"no answer within {timeout:.0f} seconds") from error
    except PermissionError as error:
        raise DaemonUnavailable("permission denied on its control socket") from error
    except OSError as error:
        raise DaemonUnavailable(error.strerror or type(error).__name__) from error
    finally:
        sock.close()
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError as error:
        raise DaemonUnavailable("it sent an unreadable answer") from error
    if not isinstance(answer, dict):
        raise DaemonUnavailable("it sent an unreadable answer")
    return answer
