"""Serving signed metadata and blobs so that caches and mirrors can front them.

Responses carry a strong ETag (SHA-256 of the content) and Cache-Control:
the timestamp (and an unversioned root) may change at any time, so they get
a short max-age; versioned metadata (``N.targets.json``) and
consistent-snapshot targets (``<sha256>.<name>``) never change, so they are
immutable. The path taken by an up-to-date client (If-None-Match → 304)
costs one stat and a dictionary lookup: no database, no hashing, and the
answer's headers are built once per file version.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
from dataclasses import dataclass

from livepatch.server.blobs import BlobStore, check_key
from livepatch.server.errors import NotFound

SHORT_MAX_AGE = 60
IMMUTABLE = b"public, max-age=31536000, immutable"
SHORT = f"public, max-age={SHORT_MAX_AGE}".encode()
_VERSIONED_METADATA = re.compile(r"[0-9]+\.[a-z_-]+\.json")
_HASHED_TARGET = re.compile(r"(?:.*/)?[0-9a-f]{64}\.[^/]+")


@dataclass(frozen=True)
class StaticResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(eq=False)
class Entry:
    """A cached file with its three possible answers built once."""

    version: str
    etag: bytes
    body: bytes
    not_modified: StaticResponse
    full: StaticResponse
    head: StaticResponse
    checked: float
    """When the store last confirmed this version (time.monotonic())."""


class StaticFiles:
    """Metadata (``metadata/``) and targets (``targets/``) from a blob store, cached.

    `revalidate` is how long (seconds) a cached file is served without asking
    the store whether it changed: 0 asks every time, which is right for a
    local directory (a stat); a remote object store gets a second or so,
    which clients and caches cannot tell from network delay.
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        max_cached_bytes: int = 64 * 1024 * 1024,
        revalidate: float = 0.0,
    ) -> None:
        self.store = store
        self.max_cached_bytes = max_cached_bytes
        self.revalidate = revalidate
        self._cache: dict[str, Entry] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def entry(self, area: str, path: str) -> Entry:
        key = f"{area}/{path}"
        cached = self._cache.get(key)
        if cached is not None and self.revalidate:
            now = time.monotonic()
            if now - cached.checked < self.revalidate:
                return cached
        info = self.store.stat(check_key(key))
        if info is None:
            if cached is not None:
                self._forget(key)
            raise NotFound(f"There is no {area} file {path!r}: refresh from timestamp.json.")
        if cached is not None and cached.version == info.version:
            cached.checked = time.monotonic()
            return cached
        body = self.store.get(key)
        entry = _entry(area, path, info.version, body)
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
        return _answer(self.entry(area, path), if_none_match, head)

    async def respond_async(
        self, area: str, path: str, if_none_match: bytes | None, *, head: bool = False
    ) -> StaticResponse:
        """`respond` for the event loop: a remote store is only asked from a thread."""
        if not self.revalidate:
            return self.respond(area, path, if_none_match, head=head)
        cached = self._cache.get(f"{area}/{path}")
        if cached is not None and time.monotonic() - cached.checked < self.revalidate:
            return _answer(cached, if_none_match, head)
        return await asyncio.to_thread(self.respond, area, path, if_none_match, head=head)

    def _forget(self, key: str) -> None:
        with self._lock:
            previous = self._cache.pop(key, None)
            if previous is not None:
                self._cached_bytes -= len(previous.body)


def _answer(entry: Entry, if_none_match: bytes | None, head: bool) -> StaticResponse:
    if if_none_match is not None and (
        if_none_match == entry.etag or etag_matches(if_none_match, entry.etag)
    ):
        return entry.not_modified
    return entry.head if head else entry.full


def _entry(area: str, path: str, version: str, body: bytes) -> Entry:
    etag = f'"{hashlib.sha256(body).hexdigest()}"'.encode()
    validators = [(b"etag", etag), (b"cache-control", _cache_control(area, path))]
    content_type = b"application/json" if area == "metadata" else b"application/octet-stream"
    full_headers = [
        *validators,
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
    ]
    return Entry(
        version=version,
        etag=etag,
        body=body,
        not_modified=StaticResponse(304, validators, b""),
        full=StaticResponse(200, full_headers, body),
        head=StaticResponse(200, full_headers, b""),
        checked=time.monotonic(),
    )


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
