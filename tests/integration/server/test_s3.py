"""Metadata and patches in an S3-compatible bucket: moto's S3 server over HTTP on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from livepatch.server.blobs import BlobStore, DirectoryBlobStore, S3BlobStore, open_store
from livepatch.server.errors import ConfigurationError, NotFound
from livepatch.server.publishing import Mirror
from tests.integration.server.live import free_port, live_server

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "livepatch-test",
    "AWS_SECRET_ACCESS_KEY": "livepatch-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 API server on loopback, with test credentials in the environment."""
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"livepatch-{uuid.uuid4().hex[:12]}"
    client(s3_endpoint).create_bucket(Bucket=name)
    return name


def client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "directory":
        return DirectoryBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    name = request.getfixturevalue("bucket")
    return open_store(f"s3://{name}/some/prefix?endpoint={endpoint}", tmp_path)


def test_blob_stores_keep_the_same_contract(store: BlobStore) -> None:
    assert store.stat("metadata/timestamp.json") is None
    with pytest.raises(NotFound):
        store.get("metadata/timestamp.json")
    store.put("metadata/timestamp.json", b"one")
    store.put("targets/patches/abc.lp-1.ko", b"module")
    first = store.stat("metadata/timestamp.json")
    assert first is not None and first.size == 3
    assert store.get("metadata/timestamp.json") == b"one"
    store.put("metadata/timestamp.json", b"two!")
    second = store.stat("metadata/timestamp.json")
    assert second is not None and second.size == 4 and second.version != first.version
    assert sorted(store.keys()) == ["metadata/timestamp.json", "targets/patches/abc.lp-1.ko"]
    assert list(store.keys("targets/")) == ["targets/patches/abc.lp-1.ko"]
    store.delete("targets/patches/abc.lp-1.ko")
    assert store.stat("targets/patches/abc.lp-1.ko") is None
    with pytest.raises(NotFound):
        store.put("../escape", b"x")


def test_s3_keys_live_under_the_prefix(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}/fleet/a?endpoint={s3_endpoint}", tmp_path)
    assert isinstance(store, S3BlobStore)
    store.put("metadata/1.root.json", b"{}")
    listed = client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["fleet/a/metadata/1.root.json"]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://host/x", "not one this service knows"),
        ("s3://bucket?colour=blue", "Unknown blob store option 'colour'"),
        ("s3:///no-bucket", "not one this service knows"),
    ],
)
def test_bad_blob_urls_are_refused_plainly(url: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        open_store(url, tmp_path)


def metadata(version: int) -> bytes:
    return json.dumps({"signed": {"version": version}}).encode()


def test_mirror_copies_timestamp_last_and_never_goes_back(tmp_path: Path) -> None:
    local = DirectoryBlobStore(tmp_path / "local")
    remote = DirectoryBlobStore(tmp_path / "remote")
    local.put("targets/patches/abc.lp-1.ko", b"module")
    local.put("metadata/2.snapshot.json", metadata(2))
    local.put("metadata/timestamp.json", metadata(2))
    remote.put("metadata/timestamp.json", metadata(1))
    Mirror(local, remote).push()
    assert remote.get("metadata/timestamp.json") == metadata(2)
    assert remote.get("targets/patches/abc.lp-1.ko") == b"module"
    # Another signer moved the remote on: pull takes its newer files, push keeps them.
    remote.put("metadata/3.snapshot.json", metadata(3))
    remote.put("metadata/timestamp.json", metadata(3))
    Mirror(local, remote).push()
    assert remote.get("metadata/timestamp.json") == metadata(3)
    Mirror(local, remote).pull()
    assert local.get("metadata/timestamp.json") == metadata(3)
    assert local.get("metadata/3.snapshot.json") == metadata(3)
    # An older remote never replaces the newer local copy.
    remote.put("metadata/timestamp.json", metadata(1))
    Mirror(local, remote).pull()
    assert local.get("metadata/timestamp.json") == metadata(3)


def test_publish_and_serve_through_a_bucket(
    s3_endpoint: str, bucket: str, tmp_path: Path, module_file: Path
) -> None:
    blobs = f"s3://{bucket}/repo?endpoint={s3_endpoint}"
    data_dir = tmp_path / "data"
    with live_server(data_dir, f"sqlite:///{data_dir}/livepatch.db", blobs=blobs) as live:
        published = live.admin_json(
            "publish",
            "--no-preflight",
            str(module_file),
            "--kernel",
            "6.1.0-56-amd64",
            "--cve",
            "CVE-2024-1086",
            "--severity",
            "high",
            "--description",
            "nf_tables use-after-free",
        )
        s3 = client(s3_endpoint)

        def object_bytes(key: str) -> bytes:
            body: bytes = s3.get_object(Bucket=bucket, Key=f"repo/{key}")["Body"].read()
            return body

        timestamp = object_bytes("metadata/timestamp.json")
        version = json.loads(timestamp)["signed"]["meta"]["snapshot.json"]["version"]
        snapshot = json.loads(object_bytes(f"metadata/{version}.snapshot.json"))
        targets_version = snapshot["signed"]["meta"]["targets.json"]["version"]
        targets = json.loads(object_bytes(f"metadata/{targets_version}.targets.json"))
        name = f"patches/{published['patch_id']}.ko"
        digest = targets["signed"]["targets"][name]["hashes"]["sha256"]
        blob_key = f"targets/patches/{digest}.{published['patch_id']}.ko"
        module = object_bytes(blob_key)
        assert hashlib.sha256(module).hexdigest() == digest
        # Served from the bucket, not from the signing copy in the data directory.
        (data_dir / "blobs" / blob_key).unlink()

        http = live.client()
        served = wait_for(http, "/v1/metadata/timestamp.json", timestamp)
        etag = served.headers["etag"]
        assert etag == f'"{hashlib.sha256(timestamp).hexdigest()}"'
        assert served.headers["cache-control"] == "public, max-age=60"
        again = http.get("/v1/metadata/timestamp.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        # Modules are for enrolled machines.
        token = live.admin_json("tokens", "create", "--machines", "1")["token"]
        enrolled = http.post(
            "/v1/enrol",
            json={
                "token": token,
                "machine_id": "s3-machine",
                "hostname": "h",
                "kernel": "6.1.0-56-amd64",
                "architecture": "amd64",
            },
        )
        assert enrolled.status_code == 201, enrolled.text
        machine = {"Authorization": f"Bearer {enrolled.json()['credential']}"}
        assert http.get(f"/v1/{blob_key}").status_code == 401
        blob = http.get(f"/v1/{blob_key}", headers=machine)
        assert blob.status_code == 200 and blob.content == module
        assert "immutable" in blob.headers["cache-control"]
        cached = http.get(
            f"/v1/{blob_key}", headers={**machine, "If-None-Match": blob.headers["etag"]}
        )
        assert cached.status_code == 304
        assert http.get("/v1/metadata/999.targets.json").status_code == 404


def wait_for(http: httpx.Client, path: str, content: bytes) -> httpx.Response:
    """The server revalidates remote files once a second: poll until it serves `content`."""
    deadline = time.monotonic() + 10
    while True:
        response = http.get(path)
        if response.content == content or time.monotonic() > deadline:
            assert response.status_code == 200
            assert response.content == content
            return response
        time.sleep(0.2)
