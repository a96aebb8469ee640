from __future__ import annotations

import pytest

from livepatch.proxies import for_url

CONFIGURED = {
    "http": "http://proxy.test:3128",
    "https": "http://proxy.test:3128",
    "no_proxy": "localhost,.internal,10.0.0.0/8,patches.example.com:8443",
}


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/v1/enrol",
        "https://updates.internal/v1/metadata/1.root.json",
        "https://10.1.2.3:8443/v1/targets/x.ko",
        "https://patches.example.com:8443/v1/enrol",
    ],
)
def test_hosts_in_no_proxy_get_no_proxy(url: str) -> None:
    assert for_url(url, CONFIGURED) == {"no_proxy": CONFIGURED["no_proxy"]}


@pytest.mark.parametrize(
    "url",
    [
        "https://patches.example.com/v1/enrol",  # listed with another port
        "https://internal.example.com/v1/enrol",
        "https://11.0.0.1/v1/enrol",
    ],
)
def test_other_hosts_get_the_configured_proxies(url: str) -> None:
    assert for_url(url, CONFIGURED) == CONFIGURED


def test_a_star_bypasses_every_host() -> None:
    assert for_url("https://anything.test/", {"https": "http://p:1", "no_proxy": "*"}) == {
        "no_proxy": "*"
    }


def test_without_a_no_proxy_list_the_settings_pass_through() -> None:
    assert for_url("http://localhost/", {"http": "http://p:1"}) == {"http": "http://p:1"}
    assert for_url("http://localhost/", {}) == {}
