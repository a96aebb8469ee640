"""Time limits for whole HTTP exchanges, and the session both HTTP clients use.

``requests`` bounds each socket read (the read timeout), never a whole
exchange: a server that sends one byte just before every read timeout keeps
a download going for days. ``limit(seconds)`` bounds the whole exchange made
inside it, status line, headers and body: a timer shuts down the sockets of
the connections the exchange took from the pool, so the blocked read returns
at once and the caller raises ``DeadlineExceeded``. ``Limits.deadline``
makes that time proportional to the length the caller expects (the length
signed metadata declares for a patch, the size cap for anything else), plus
a floor for the connection and TLS handshake.

The session also never follows redirects: ``livepatch.client.api`` refuses
them, ``livepatch.trust.fetcher`` follows only those to the same scheme,
host and port.

SOCKS proxies bring their own connection pools; through them only the
per-read timeouts apply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


@dataclass(frozen=True)
class Limits:
    """How long one exchange may take: `floor` seconds plus `min_rate` bytes a second."""

    floor: float = 30.0
    min_rate: float = 16 * 1024.0

    def deadline(self, length: int) -> float:
        """Seconds allowed for an exchange carrying at most `length` bytes."""
        return self.floor + max(length, 0) / self.min_rate


class DeadlineExceeded(Exception):
    """The exchange was cut off at its deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the transfer did not finish within {seconds:.0f} seconds")
        self.seconds = seconds


class Deadline:
    """The connections one exchange uses, shut down when its time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()

    def adopt(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            if self.expired:
                _shut(connection)

    def release(self, connection: HTTPConnection) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._connections.remove(connection)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _shut(connection)

    def check(self) -> None:
        """Raise DeadlineExceeded if the time ran out (data read since may be cut short)."""
        if self.expired:
            raise DeadlineExceeded(self.seconds)


def _shut(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Current(threading.local):
    deadline: Deadline | None = None


_current = _Current()


@contextlib.contextmanager
def limit(seconds: float) -> Iterator[Deadline]:
    """Bound the exchanges this thread makes inside the block to `seconds` in total."""
    deadline = Deadline(seconds)
    outer = _current.deadline
    _current.deadline = deadline
    timer = threading.Timer(max(seconds, 0.0), deadline.expire)
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        yield deadline
    finally:
        timer.cancel()
        _current.deadline = outer
        if time.monotonic() - started >= seconds:
            deadline.expired = True


class _Watched:
    """Mixin for urllib3 pools: connections taken out join the thread's current deadline."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        if _current.deadline is not None:
            _current.deadline.adopt(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        if _current.deadline is not None and conn is not None:
            _current.deadline.release(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    pass


_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}


def _watch(manager: PoolManager) -> PoolManager:
    if manager.pool_classes_by_scheme.get("https") is HTTPSConnectionPool:
        manager.pool_classes_by_scheme = _POOLS  # not SOCKS: it has pools of its own
    return manager


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _watch(super().proxy_manager_for(proxy, **proxy_kwargs))


def session() -> requests.Session:
    """A requests session whose exchanges `limit` can bound."""
    new = requests.Session()
    adapter = _Adapter()
    new.mount("https://", adapter)
    new.mount("http://", adapter)
    return new
