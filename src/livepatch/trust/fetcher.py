"""The one place update metadata and patches cross the network.

``ServiceFetcher`` is python-tuf's ``FetcherInterface`` on a requests
session: it adds ``Authorization: Bearer <credential>`` when the machine has
one (asked for on every request, so a renewed credential is used at once),
honours proxies from the configuration (except for the hosts its no-proxy
list names, see ``livepatch.proxies``) and the environment, verifies TLS
against a custom CA bundle when given, and applies connect/read timeouts.
The interface's ``download_bytes``/``download_file`` enforce size limits
and wrap every failure into tuf's ``DownloadError``.

Two limits python-tuf leaves to the fetcher: each download has a total
deadline proportional to the length it may have (the length signed metadata
declares for a target, tuf's cap for metadata; see ``livepatch.transfer``),
so a server dripping bytes cannot stall a check-in; and redirects are
followed only to the same scheme, host and port (the credential must not
travel anywhere else, nor in clear text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from livepatch import __version__, transfer
from livepatch.proxies import for_url

CHUNK_SIZE = 64 * 1024
MAX_REDIRECTS = 3
TRANSPORT_ERRORS = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True)
class FetchConfig:
    """Transport settings, from the client configuration."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    ca_bundle: Path | None = None
    proxies: Mapping[str, str] = field(default_factory=dict)
    user_agent: str = f"livepatch/{__version__}"
    limits: transfer.Limits = field(default_factory=transfer.Limits)


class ServiceFetcher(FetcherInterface):
    def __init__(
        self,
        config: FetchConfig | None = None,
        credential: Callable[[], str | None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.config = config or FetchConfig()
        self._credential = credential or (lambda: None)
        self._session = session or transfer.session()
        self._session.trust_env = True  # HTTPS_PROXY, NO_PROXY, ... from the environment
        self._deadline: transfer.Deadline | None = None

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        """tuf's download, within a deadline for `max_length` bytes."""
        with transfer.limit(self.config.limits.deadline(max_length)) as deadline:
            self._deadline = deadline
            try:
                with super().download_file(url, max_length) as file:
                    deadline.check()
                    self._deadline = None
                    yield file
            finally:
                self._deadline = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._get(url)
            if not response.is_redirect:
                break
            location = urljoin(url, response.headers.get("Location", ""))
            response.close()
            if _origin(location) != origin:
                raise exceptions.DownloadError(
                    f"{_host(url)} redirected to {_host(location)}; redirects to another "
                    "host or scheme are refused"
                )
            url = location
        else:
            raise exceptions.DownloadError(f"{_host(url)} redirected too many times")
        if response.status_code != 200:
            response.close()
            raise exceptions.DownloadHTTPError(
                f"{_host(url)} answered HTTP {response.status_code}", response.status_code
            )
        return self._chunks(response)

    def _get(self, url: str) -> requests.Response:
        headers = {"User-Agent": self.config.user_agent}
        credential = self._credential()
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        verify: bool | str = str(self.config.ca_bundle) if self.config.ca_bundle else True
        try:
            return self._session.get(
                url,
                headers=headers,
                stream=True,
                verify=verify,
                allow_redirects=False,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                proxies=for_url(url, self.config.proxies),
            )
        except requests.exceptions.Timeout as error:
            self._check_deadline(error)
            raise exceptions.SlowRetrievalError(f"timed out connecting to {_host(url)}") from error
        except TRANSPORT_ERRORS as error:
            self._check_deadline(error)
            raise exceptions.DownloadError(f"could not reach {_host(url)}: {error}") from error

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                self._check_deadline()
                yield chunk
            self._check_deadline()
        except requests.exceptions.Timeout as error:
            self._check_deadline(error)
            raise exceptions.SlowRetrievalError("the download stalled") from error
        except TRANSPORT_ERRORS as error:
            self._check_deadline(error)
            raise exceptions.DownloadError(f"the download failed: {error}") from error
        finally:
            response.close()

    def _check_deadline(self, cause: BaseException | None = None) -> None:
        """Raise SlowRetrievalError when the current download ran out of time."""
        deadline = self._deadline
        if deadline is None:
            return
        try:
            deadline.check()
        except transfer.DeadlineExceeded as error:
            raise exceptions.SlowRetrievalError(str(error)) from cause or error


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _host(url: str) -> str:
    """Scheme and host only: never echo paths or query strings into messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
