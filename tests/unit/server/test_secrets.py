from __future__ import annotations

from livepatch.server import secrets


def test_tokens_and_credentials_are_random_and_stored_as_digests() -> None:
    token = secrets.new_token()
    assert len(token) == 32
    assert token != secrets.new_token()
    assert len(secrets.new_credential()) >= 43
    stored = secrets.digest(token)
    assert stored != token and len(stored) == 64
    assert secrets.matches(token, stored)
    assert not secrets.matches(token + "x", stored)
