"""Cacheable serving: ETags, 304s, Cache-Control, and cache invalidation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from livepatch.server.blobs import DirectoryBlobStore
from livepatch.server.errors import NotFound
from livepatch.server.static import IMMUTABLE, SHORT, StaticFiles, etag_matches


@pytest.fixture
def files(tmp_path: Path) -> StaticFiles:
    store = DirectoryBlobStore(tmp_path)
    store.put("metadata/timestamp.json", b'{"v": 1}')
    store.put("metadata/3.targets.json", b"{}")
    store.put("targets/patches/" + "a" * 64 + ".lp-1.ko", b"module")
    return StaticFiles(store)


def headers(answer: object) -> dict[bytes, bytes]:
    return dict(answer.headers)  # type: ignore[attr-defined]


def test_full_response_has_strong_etag_and_short_cache_for_timestamp(files: StaticFiles) -> None:
    answer = files.respond("metadata", "timestamp.json", None)
    assert answer.status == 200
    assert answer.body == b'{"v": 1}'
    digest = hashlib.sha256(b'{"v": 1}').hexdigest()
    expected = f'"{digest}"'.encode()
    assert headers(answer)[b"etag"] == expected
    assert headers(answer)[b"cache-control"] == SHORT
    assert headers(answer)[b"content-type"] == b"application/json"


def test_versioned_files_are_immutable(files: StaticFiles) -> None:
    assert headers(files.respond("metadata", "3.targets.json", None))[b"cache-control"] == IMMUTABLE
    target = files.respond("targets", "patches/" + "a" * 64 + ".lp-1.ko", None)
    assert headers(target)[b"cache-control"] == IMMUTABLE


def test_if_none_match_gives_304_without_body(files: StaticFiles) -> None:
    etag = headers(files.respond("metadata", "timestamp.json", None))[b"etag"]
    answer = files.respond("metadata", "timestamp.json", b'"other", ' + etag)
    assert answer.status == 304
    assert answer.body == b""
    assert headers(answer)[b"etag"] == etag


def test_a_changed_file_gets_a_new_etag(files: StaticFiles) -> None:
    old = headers(files.respond("metadata", "timestamp.json", None))[b"etag"]
    files.store.put("metadata/timestamp.json", b'{"v": 2}')
    answer = files.respond("metadata", "timestamp.json", old)
    assert answer.status == 200
    assert answer.body == b'{"v": 2}'


def test_head_has_no_body(files: StaticFiles) -> None:
    answer = files.respond("metadata", "timestamp.json", None, head=True)
    assert answer.status == 200
    assert answer.body == b""
    assert headers(answer)[b"content-length"] == b"8"


@pytest.mark.parametrize("path", ["missing.json", "../x", "a//b", ".hidden", ""])
def test_missing_or_unsafe_paths_are_not_found(files: StaticFiles, path: str) -> None:
    with pytest.raises(NotFound):
        files.respond("metadata", path, None)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (b"*", True),
        (b'W/"x"', True),
        (b'"x"', True),
        (b'"y", "x"', True),
        (b'"y"', False),
        (b"x", False),
    ],
)
def test_etag_matching_is_weak_comparison(header: bytes, matches: bool) -> None:
    assert etag_matches(header, b'"x"') is matches
