"""Where patch modules and TUF metadata live: the BlobStore interface.

The service only needs to put, get, stat, list and delete blobs by key
(``metadata/3.targets.json``, ``targets/patches/<sha256>.lp-….ko``). A
directory is the default; an S3-compatible bucket is chosen by URL
(``--blobs s3://BUCKET/PREFIX?endpoint=URL&region=R``, see `open_store`).
Signing always works on the local directory; ``publishing.Mirror`` copies
what it signs to a bucket.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from livepatch.server.errors import ConfigurationError, NotFound

_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}")


class InvalidKey(NotFound):
    """A key that cannot name a blob (e.g. ``..`` or an empty segment)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"There is no file {key!r} here: check the path.")


@dataclass(frozen=True)
class BlobInfo:
    """Enough to tell whether a cached copy is still current."""

    size: int
    version: str
    """Changes whenever the content does (mtime+size+inode, or an S3 ETag)."""


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous blob atomically."""

    def get(self, key: str) -> bytes:
        """The blob's bytes; raises NotFound when there is none."""

    def stat(self, key: str) -> BlobInfo | None:
        """The blob's size and version, or None when there is none."""

    def delete(self, key: str) -> None:
        """Remove the blob if present."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix` (a directory-like prefix ending in '/', or '')."""


@functools.lru_cache(maxsize=4096)
def check_key(key: str) -> str:
    """`key` if every '/'-separated segment is a plain file name (valid keys are memoised)."""
    segments = key.split("/")
    if not all(_SEGMENT.fullmatch(s) for s in segments) or len(key) > 1024:
        raise InvalidKey(key)
    return key


class DirectoryBlobStore:
    """Blobs as files under a root directory, written via temp file + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prefix = f"{root}/"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise NotFound(f"There is no file {key!r} here: check the path.") from error

    def stat(self, key: str) -> BlobInfo | None:
        try:
            st = os.stat(self._prefix + check_key(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return BlobInfo(size=st.st_size, version=f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}")

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()


class S3BlobStore:
    """Blobs as objects in an S3-compatible bucket, under an optional key prefix.

    Credentials come from boto3's usual sources (environment, shared files,
    instance roles); they are never part of the URL. A blob's version is its
    object ETag.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey as error:
            raise NotFound(f"There is no file {key!r} here: check the path.") from error
        body: bytes = answer["Body"].read()
        return body

    def stat(self, key: str) -> BlobInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return BlobInfo(size=int(head["ContentLength"]), version=str(head["ETag"]))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", ()):
                yield str(item["Key"])[len(self.prefix) :]


def open_store(url: str | None, directory: Path) -> BlobStore:
    """The store a ``--blobs`` URL names; `directory` when there is none.

    ``s3://BUCKET[/PREFIX][?endpoint=URL][&region=REGION]``: an S3-compatible
    bucket (``endpoint`` for MinIO, Ceph, moto and the like); ``file:///PATH``
    or a plain path: a directory.
    """
    if not url:
        return DirectoryBlobStore(directory)
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return DirectoryBlobStore(Path(parts.path))
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigurationError(
            f"The blob store URL {url!r} is not one this service knows: use "
            "s3://BUCKET/PREFIX?endpoint=URL or a directory."
        )
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown:
        raise ConfigurationError(
            f"Unknown blob store option {unknown[0]!r}: use endpoint= and region=."
        )
    try:
        import boto3  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as error:
        raise ConfigurationError("An S3 blob store needs boto3: install livepatch[s3].") from error
    client = boto3.client(
        "s3",
        endpoint_url=query.get("endpoint", [None])[0],
        region_name=query.get("region", [None])[0],
    )
    return S3BlobStore(client, parts.netloc, parts.path)
