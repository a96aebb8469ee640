"""The updater over real HTTP(S) on loopback: credential, proxy, CA bundle, errors."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import shutil
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tuf.api import exceptions

from livepatch.trust import errors
from livepatch.trust.fetcher import FetchConfig
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.repository import MetadataRepository
from livepatch.trust.updater import PatchUpdater
from tests.unit.trust.tufworld import patch_fields

MODULE = b"\x7fELF module served over HTTP"


class Served:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: list[tuple[str, str | None]] = []  # (request target, Authorization)


def _handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.seen.append((self.path, self.headers.get("Authorization")))
            path = urlsplit(self.path).path.lstrip("/")  # proxies get absolute URLs
            file = served.root / path
            if ".." in path or not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    keys = KeyDirectory(tmp_path / "keys")
    keys.init(algorithm="ecdsa")
    served = tmp_path / "www"
    repo = MetadataRepository(served / "metadata", served / "targets", keys)
    repo.add_target("patches/lp-1.ko", MODULE, patch_fields("lp-1"))
    repo.publish()
    return served


def _serve(served: Served, context: ssl.SSLContext | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(repository: Path) -> Iterator[tuple[str, Served]]:
    served = Served(repository)
    for url in _serve(served):
        yield url, served


def _client(tmp: Path, base: str, root: bytes, **kwargs: object) -> PatchUpdater:
    return PatchUpdater(
        tmp / "client" / "metadata",
        f"{base}/metadata/",
        f"{base}/targets/",
        root=root,
        **kwargs,  # type: ignore[arg-type]
    )


def test_refresh_and_download_carry_the_credential(
    site: tuple[str, Served], repository: Path, tmp_path: Path
) -> None:
    base, served = site
    root = (repository / "metadata/root.json").read_bytes()
    client = _client(tmp_path, base, root, credential=lambda: "machine-credential")
    [patch] = client.patches()
    assert client.download(patch) == MODULE
    assert len(client.signing_certificates()) == 1
    assert served.seen and all(auth == "Bearer machine-credential" for _, auth in served.seen)
    assert any(target.startswith("/targets/patches/") for target, _ in served.seen)


def test_no_credential_no_header(
    site: tuple[str, Served], repository: Path, tmp_path: Path
) -> None:
    base, served = site
    _client(tmp_path, base, (repository / "metadata/root.json").read_bytes()).refresh()
    assert served.seen and all(auth is None for _, auth in served.seen)


def test_http_error_is_a_download_failure(
    site: tuple[str, Served], repository: Path, tmp_path: Path
) -> None:
    base, _ = site
    root = (repository / "metadata/root.json").read_bytes()
    shutil.move(repository / "metadata/timestamp.json", repository / "hidden.json")
    with pytest.raises(errors.DownloadFailed, match="HTTP 404") as caught:
        _client(tmp_path, base, root).refresh()
    assert isinstance(caught.value.__cause__, exceptions.DownloadHTTPError)


def test_unreachable_service(repository: Path, tmp_path: Path) -> None:
    root = (repository / "metadata/root.json").read_bytes()
    client = _client(
        tmp_path, "http://127.0.0.1:9", root, fetch_config=FetchConfig(connect_timeout=2)
    )
    with pytest.raises(
        errors.DownloadFailed, match=re.escape("could not reach http://127.0.0.1:9")
    ):
        client.refresh()


def test_requests_go_through_the_configured_proxy(
    site: tuple[str, Served], repository: Path, tmp_path: Path
) -> None:
    proxy, served = site
    root = (repository / "metadata/root.json").read_bytes()
    config = FetchConfig(proxies={"http": proxy})
    client = _client(tmp_path, "http://livepatch.invalid", root, fetch_config=config)
    client.refresh()
    assert served.seen[0][0].startswith("http://livepatch.invalid/metadata/")


def _tls_identity(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "tls-cert.pem", tmp / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def test_custom_ca_bundle(repository: Path, tmp_path: Path) -> None:
    context, ca = _tls_identity(tmp_path)
    root = (repository / "metadata/root.json").read_bytes()
    for base in _serve(Served(repository), context):
        with pytest.raises(errors.DownloadFailed):
            _client(tmp_path / "a", base, root).refresh()
        client = _client(tmp_path / "b", base, root, fetch_config=FetchConfig(ca_bundle=ca))
        [patch] = client.patches()
        assert client.download(patch) == MODULE
