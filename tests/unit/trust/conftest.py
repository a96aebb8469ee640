from __future__ import annotations

import datetime

import pytest

from tests.unit.trust.pki import NOW, Identity, Pki


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki("Ours")


@pytest.fixture(scope="session")
def signer(pki: Pki) -> Identity:
    return pki.issue("signing")


@pytest.fixture(scope="session")
def foreign() -> Identity:
    return Pki("Foreign").issue("signing")


@pytest.fixture(scope="session")
def expired(pki: Pki) -> Identity:
    return pki.issue("expired", start=NOW - datetime.timedelta(days=400), days=100)


@pytest.fixture(scope="session")
def future(pki: Pki) -> Identity:
    return pki.issue("future", start=NOW + datetime.timedelta(days=10), days=100)


@pytest.fixture(scope="session")
def ecdsa() -> Identity:
    return Pki("Elliptic", "ecdsa").issue("signing")
