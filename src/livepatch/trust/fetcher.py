"""The one place update metadata and patches cross the network.

``ServiceFetcher`` is python-tuf's ``FetcherInterface`` on a requests
session: it adds ``Authorization: Bearer <credential>`` when the machine has
one (asked for on every request, so a renewed credential is used at once),
honours proxies from the configuration (except for the hosts its no-proxy
list names, see ``livepatch.proxies``) and the environment, verifies TLS
against a custom CA bundle when given, and applies connect/read timeouts.
The interface's ``download_bytes``/``download_file`` enforce size limits
and wrap every failure into tuf's ``DownloadError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from livepatch import __version__
from livepatch.proxies import for_url

CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class FetchConfig:
    """Transport settings, from the client configuration."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    ca_bundle: Path | None = None
    proxies: Mapping[str, str] = field(default_factory=dict)
    user_agent: str = f"livepatch/{__version__}"


class ServiceFetcher(FetcherInterface):
    def __init__(
        self,
        config: FetchConfig | None = None,
        credential: Callable[[], str | None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.config = config or FetchConfig()
        self._credential = credential or (lambda: None)
        self._session = session or requests.Session()
        self._session.trust_env = True  # HTTPS_PROXY, NO_PROXY, ... from the environment

    def _fetch(self, url: str) -> Iterator[bytes]:
        headers = {"User-Agent": self.config.user_agent}
        credential = self._credential()
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        verify: bool | str = str(self.config.ca_bundle) if self.config.ca_bundle else True
        try:
            response = self._session.get(
                url,
                headers=headers,
                stream=True,
                verify=verify,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                proxies=for_url(url, self.config.proxies),
            )
        except requests.exceptions.Timeout as error:
            raise exceptions.SlowRetrievalError(f"timed out connecting to {_host(url)}") from error
        except requests.exceptions.RequestException as error:
            raise exceptions.DownloadError(f"could not reach {_host(url)}: {error}") from error
        if response.status_code != 200:
            response.close()
            raise exceptions.DownloadHTTPError(
                f"{_host(url)} answered HTTP {response.status_code}", response.status_code
            )
        return self._chunks(response)

    @staticmethod
    def _chunks(response: requests.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_content(CHUNK_SIZE)
        except requests.exceptions.Timeout as error:
            raise exceptions.SlowRetrievalError("the download stalled") from error
        except requests.exceptions.RequestException as error:
            raise exceptions.DownloadError(f"the download failed: {error}") from error
        finally:
            response.close()


def _host(url: str) -> str:
    """Scheme and host only: never echo paths or query strings into messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
