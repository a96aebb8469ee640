"""`livepatch enable --token-file PATH|-`: the token never needs to be on argv."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from livepatch.client.commands import read_token
from livepatch.client.errors import TokenUnreadable

TOKEN = "7dc889a0b1c2d3e4f5a6b7c8d9e0f1a2"


def test_from_stdin_with_a_trailing_newline() -> None:
    assert read_token(None, "-", io.BytesIO(f"{TOKEN}\n".encode())) == TOKEN


def test_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\r\n")
    assert read_token(None, str(path), io.BytesIO(b"unused")) == TOKEN


def test_from_the_argument() -> None:
    assert read_token(TOKEN, None, io.BytesIO()) == TOKEN


@pytest.mark.parametrize(
    ("argument", "path", "stdin", "message"),
    [
        (TOKEN, "-", b"", "either as an argument or with --token-file PATH"),
        (None, None, b"", "either as an argument or with --token-file PATH"),
        (None, "-", b"", "Standard input does not hold one token"),
        (None, "-", b"\n\n", "Standard input does not hold one token"),
        (None, "-", b"two tokens\n", "Standard input does not hold one token"),
        (None, "-", b"\xff\xfe", "Standard input does not hold one token"),
        (None, "-", b"x" * 5000, "Standard input does not hold one token"),
        (None, "/nonexistent/token", b"", "Cannot read the token file /nonexistent/token ("),
    ],
)
def test_refusals_say_what_to_do(
    argument: str | None, path: str | None, stdin: bytes, message: str
) -> None:
    with pytest.raises(TokenUnreadable) as caught:
        read_token(argument, path, io.BytesIO(stdin))
    assert message in str(caught.value)
    assert caught.value.exit_code == 2
