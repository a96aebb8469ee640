"""The proxies for one HTTP request: the configured ones, unless no-proxy names the host.

``requests`` applies ``no_proxy`` only to proxies it finds in the environment
(``HTTPS_PROXY`` and friends), never to proxies it is given, so a session
holding the configured ``http-proxy``/``https-proxy`` would send every
request through them. Both HTTP clients (the machine API and the metadata
fetcher) instead pass the result of ``for_url`` with each request.
"""

from __future__ import annotations

from collections.abc import Mapping

from requests.utils import should_bypass_proxies


def for_url(url: str, configured: Mapping[str, str]) -> dict[str, str]:
    """The ``proxies=`` argument for one request to `url`.

    `configured` is in requests' shape (``http``, ``https``, ``no_proxy``).
    When its no-proxy list names the host the result holds only that list:
    requests then connects directly, and the list keeps environment proxies
    away from the host too. Otherwise it is `configured` itself; a session
    that trusts the environment fills in the schemes it leaves out.
    """
    no_proxy = configured.get("no_proxy", "")
    if no_proxy and should_bypass_proxies(url, no_proxy=no_proxy):
        return {"no_proxy": no_proxy}
    return dict(configured)
