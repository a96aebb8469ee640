"""Serving signed metadata and blobs so that caches and mirrors can front them.

Responses carry a strong ETag (SHA-256 of the content) and Cache-Control:
the timestamp (and an unversioned root) may change at any time, so they get
a short max-age; versioned metadata (``N.targets.json``) and
consistent-snapshot targets (``<sha256>.<name>``) never change, so they are
immutable. The path taken by an up-to-date client (If-None-Match → 304)
costs one stat and a dictionary lookup: no database, no hashing.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

from livepatch.server.blobs import BlobStore, check_key
from livepatch.server.errors import NotFound

SHORT_MAX_AGE = 60
IMMUTABLE = b"public, max-age=31536000, immutable"
SHORT = f"public, max-age={SHORT_MAX_AGE}".encode()
_VERSIONED_METADATA = re.compile(r"[0-9]+\.[a-z_-]+\.json")
_HASHED_TARGET = re.compile(r"(?:.*/)?[0-9a-f]{64}\.[^/]+")


@dataclass(frozen=True)
class Entry:
    version: str
    etag: bytes
    body: bytes
    content_type: bytes
    cache_control: bytes


@dataclass(frozen=True)
class StaticResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class StaticFiles:
    """Metadata (``metadata/``) and targets (``targets/``) from a blob store, cached."""

    def __init__(self, store: BlobStore, *, max_cached_bytes: int = 64 * 1024 * 1024) -> None:
        self.store = store
        self.max_cached_bytes = max_cached_bytes
        self._cache: dict[str, Entry] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def entry(self, area: str, path: str) -> Entry:
        key = check_key(f"{area}/{path}")
        info = self.store.stat(key)
        if info is None:
            raise NotFound(f"There is no {area} file {path!r}: refresh from timestamp.json.")
        cached = self._cache.get(key)
        if cached is not None and cached.version == info.version:
            return cached
        body = self.store.get(key)
        entry = Entry(
            version=info.version,
            etag=f'"{hashlib.sha256(body).hexdigest()}"'.encode(),
            body=body,
            content_type=b"application/json" if area == "metadata" else b"application/octet-stream",
            cache_control=_cache_control(area, path),
        )
        with self._lock:
            previous = self._cache.pop(key, None)
            if previous is not None:
                self._cached_bytes -= len(previous.body)
            if self._cached_bytes + len(body) > self.max_cached_bytes:
                self._cache.clear()
                self._cached_bytes = 0
            self._cache[key] = entry
            self._cached_bytes += len(body)
        return entry

    def respond(
        self, area: str, path: str, if_none_match: bytes | None, *, head: bool = False
    ) -> StaticResponse:
        entry = self.entry(area, path)
        headers = [
            (b"etag", entry.etag),
            (b"cache-control", entry.cache_control),
        ]
        if if_none_match is not None and etag_matches(if_none_match, entry.etag):
            return StaticResponse(304, headers, b"")
        headers += [
            (b"content-type", entry.content_type),
            (b"content-length", str(len(entry.body)).encode()),
        ]
        return StaticResponse(200, headers, b"" if head else entry.body)


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 weak comparison, as If-None-Match requires."""
    if if_none_match.strip() == b"*":
        return True
    for candidate in if_none_match.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def _cache_control(area: str, path: str) -> bytes:
    name = path.rsplit("/", 1)[-1]
    if area == "metadata":
        return IMMUTABLE if _VERSIONED_METADATA.fullmatch(name) else SHORT
    return IMMUTABLE if _HASHED_TARGET.fullmatch(path) else SHORT
