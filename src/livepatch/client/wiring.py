"""The production runtime: real kernel, HTTPS service client, TUF metadata.

Each factory imports its heavy dependencies only when called, so commands that
never talk to the service (``status``, ``config``) stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from livepatch.client.checkin import Runtime, ServiceFactory
from livepatch.client.config import PEM_MARKER, Config
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.paths import Paths
from livepatch.client.ports import MetadataSource, ServiceClient
from livepatch.client.state import Credential


def now() -> datetime:
    return datetime.now(UTC)


def ca_bundle(config: Config, paths: Paths) -> str | None:
    """The CA bundle path from ca-certs (a PEM is written to the state dir on `config`)."""
    if not config.ca_certs:
        return None
    if PEM_MARKER in config.ca_certs:
        return str(paths.ca_bundle)
    return config.ca_certs


def service_factory(paths: Paths) -> ServiceFactory:
    def build(config: Config) -> ServiceClient:
        from livepatch.client.api import HttpServiceClient

        return HttpServiceClient(
            config.remote_server, ca_bundle=ca_bundle(config, paths), proxies=config.proxies()
        )

    return build


def metadata_factory(config: Config, paths: Paths, credential: Credential) -> MetadataSource:
    from livepatch.client.metadata import TufMetadata

    return TufMetadata(
        config.remote_server,
        paths=paths,
        credential=credential,
        ca_bundle=ca_bundle(config, paths),
        proxies=config.proxies(),
    )


def default_runtime(environ: Mapping[str, str] = os.environ) -> Runtime:
    paths = Paths.from_environment(environ)
    return Runtime(
        paths=paths,
        kernel=KernelAdapter(Path("/")),
        service=service_factory(paths),
        metadata=metadata_factory,
        clock=now,
    )
