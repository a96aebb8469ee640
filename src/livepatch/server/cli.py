"""`livepatch-server`: run the patch service (`serve`) or migrate its database.

Defaults: listen on 127.0.0.1, port 8443 with TLS or 8080 without; keep
state in $LIVEPATCH_SERVER_DATA or /var/lib/livepatch-server with SQLite
there. `serve` migrates the database and initialises the signed repository
on start, so a fresh data directory just works; it also empties the
directory where its workers share their counters (see ``metrics.py``). The web stack and the
database layer are imported only by the commands that use them, so that
``--help`` (here and in livepatch-admin, which shares the options) is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from livepatch import __version__
from livepatch.cli_support import configure_logging, run
from livepatch.server.config import (
    DEFAULT_HOST,
    DEFAULT_PORT_PLAIN,
    DEFAULT_PORT_TLS,
    ServerConfig,
    load_config,
)
from livepatch.server.errors import ConfigurationError

PROGRAM = "livepatch-server"
MAX_DEFAULT_WORKERS = 8


def add_location_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --database and --blobs, shared with livepatch-admin."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="state directory (default: $LIVEPATCH_SERVER_DATA or /var/lib/livepatch-server)",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="database URL (default: SQLite in the data directory; "
        "or postgresql+psycopg://USER@HOST/DB)",
    )
    parser.add_argument(
        "--blobs",
        metavar="URL",
        help="where metadata and patches are served from (default: the data directory; "
        "or s3://BUCKET/PREFIX?endpoint=URL&region=REGION, credentials from the AWS_* "
        "environment)",
    )


def config_from(args: argparse.Namespace) -> ServerConfig:
    return load_config(args.data_dir, args.database, blobs_url=args.blobs)


def prepare(config: ServerConfig) -> None:
    """Migrate the database and make sure the signed repository exists."""
    from livepatch.server.private import private_directory
    from livepatch.server.service import Service

    private_directory(config.data_dir)
    service = Service(config)
    try:
        service.database.migrate()
        with service.publisher.locked():
            service.publisher.refresh_timestamp()
    finally:
        service.close()


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from livepatch.server import asgi
    from livepatch.server.metrics import reset_directory
    from livepatch.server.protocol import GuardedHttpToolsProtocol

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigurationError("Give both --tls-cert and --tls-key, or neither.")
    config = config_from(args)
    prepare(config)
    os.environ[asgi.DATA_DIR_VAR] = str(config.data_dir)
    if args.database:
        os.environ[asgi.DATABASE_VAR] = args.database
    if args.blobs:
        os.environ[asgi.BLOBS_VAR] = args.blobs
    if args.public_targets:
        os.environ[asgi.PUBLIC_TARGETS_VAR] = "1"
    # The workers' counters start at zero with the server, as Prometheus expects.
    reset_directory(config.metrics_dir)
    os.environ[asgi.METRICS_DIR_VAR] = str(config.metrics_dir)
    port = args.port or (DEFAULT_PORT_TLS if args.tls_cert else DEFAULT_PORT_PLAIN)
    _raise_open_file_limit()
    limits = config.limits
    uvicorn.run(
        "livepatch.server.asgi:create",
        factory=True,
        host=args.host,
        port=port,
        workers=args.workers,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
        log_level="debug" if args.debug else "warning",
        access_log=args.debug,
        server_header=False,
        # Client addresses are the peer's (rate limits use them): never X-Forwarded-For.
        proxy_headers=False,
        http=GuardedHttpToolsProtocol,
        limit_concurrency=limits.max_connections,
        timeout_keep_alive=limits.keep_alive_timeout,
    )
    return 0


def _raise_open_file_limit() -> None:
    """Let connections use every file descriptor the system allows, not the soft default."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def migrate(args: argparse.Namespace) -> int:
    from livepatch.server.private import private_directory
    from livepatch.server.service import Service

    config = config_from(args)
    private_directory(config.data_dir)
    service = Service(config)
    try:
        service.database.migrate()
    finally:
        service.close()
    print(f"{PROGRAM}: the database is at the newest schema.")
    return 0


def install_unit(args: argparse.Namespace) -> int:
    from livepatch.server import unit

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigurationError("Give both --tls-cert and --tls-key, or neither.")
    if args.prefix == Path("/") and os.geteuid() != 0:
        raise ConfigurationError(
            "Installing the unit writes to /etc: run as root, or give --prefix DIR to look first."
        )
    options = unit.UnitOptions(
        executable=args.executable or unit.default_executable(),
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert.absolute() if args.tls_cert else None,
        tls_key=args.tls_key.absolute() if args.tls_key else None,
        public_targets=args.public_targets,
        environment_file=args.environment_file,
    )
    for path in unit.install(args.prefix, options):
        print(f"Wrote {path}")
    print(unit.NEXT_STEPS, end="")
    return 0


def default_workers() -> int:
    """One worker process per CPU this process may run on, capped.

    Each worker keeps its own database connections; the cap keeps a big
    machine within PostgreSQL's default connection limit.
    """
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Run the livepatch patch service.")
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve_parser = commands.add_parser("serve", help="serve the HTTP API")
    add_location_options(serve_parser)
    serve_parser.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    serve_parser.add_argument(
        "--port",
        type=int,
        help=f"default {DEFAULT_PORT_TLS} with TLS, {DEFAULT_PORT_PLAIN} without",
    )
    serve_parser.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain")
    serve_parser.add_argument("--tls-key", metavar="FILE", help="PEM private key")
    serve_parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help=f"worker processes (default: one per CPU, at most {MAX_DEFAULT_WORKERS})",
    )
    serve_parser.add_argument(
        "--public-targets",
        action="store_true",
        help="serve patch modules without a machine credential (behind a CDN); "
        "by default only enrolled machines may download them",
    )
    serve_parser.set_defaults(handler=serve)

    unit_parser = commands.add_parser(
        "install-unit", help="install a hardened systemd unit and its system user"
    )
    unit_parser.add_argument("--prefix", type=Path, default=Path("/"), help="default /")
    unit_parser.add_argument("--host", default="0.0.0.0", help="default 0.0.0.0")  # noqa: S104
    unit_parser.add_argument("--port", type=int)
    unit_parser.add_argument("--tls-cert", type=Path, metavar="FILE")
    unit_parser.add_argument("--tls-key", type=Path, metavar="FILE")
    unit_parser.add_argument("--public-targets", action="store_true")
    unit_parser.add_argument(
        "--environment-file",
        type=Path,
        metavar="FILE",
        help="e.g. LIVEPATCH_SERVER_DATABASE=postgresql+psycopg://… (0600, root-owned)",
    )
    unit_parser.add_argument("--executable", type=Path, help="default: this livepatch-server")
    unit_parser.set_defaults(handler=install_unit)

    migrate_parser = commands.add_parser("migrate", help="upgrade the database schema")
    add_location_options(migrate_parser)
    migrate_parser.set_defaults(handler=migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    return run(lambda: int(args.handler(args)), program=PROGRAM, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
