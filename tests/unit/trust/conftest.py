from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from livepatch.trust.keys import KeyDirectory
from tests.unit.trust.pki import NOW, Identity, Pki
from tests.unit.trust.tufworld import World


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


@pytest.fixture(scope="session")
def keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised key directory (small RSA keys), copied by each test that needs one."""
    path = tmp_path_factory.mktemp("keys-template") / "keys"
    KeyDirectory(path).init(ca_bits=2048, signing_bits=2048)
    return path


@pytest.fixture
def world(tmp_path: Path, keys_template: Path) -> World:
    return World(tmp_path, keys_template)
