"""`livepatch-admin`: the administrator's command.

Each group of subcommands lives in its own module with a ``register``
function that adds its parsers; a subcommand's parser sets ``handler`` to a
function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from livepatch import __version__
from livepatch.cli_support import configure_logging, run

PROGRAM = "livepatch-admin"

# Modules contributing subcommands; each defines register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "livepatch.server.admin.keys",
    "livepatch.server.admin.tokens",
    "livepatch.server.admin.patches",
    "livepatch.server.admin.preflight",
    "livepatch.server.admin.console",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="Administer a livepatch service.")
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    remote = parser.add_argument_group("a remote service (over HTTPS, through its admin API)")
    remote.add_argument("--server", metavar="URL", help="e.g. https://livepatch.example:8443")
    remote.add_argument("--api-key-file", type=Path, metavar="FILE", help="an admin API key")
    remote.add_argument("--ca-file", type=Path, metavar="FILE", help="CA certificate to trust")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    return run(lambda: int(_dispatch(args)), program=PROGRAM, debug=args.debug)


def _dispatch(args: argparse.Namespace) -> int:
    if args.server and getattr(args, "local_only", False):
        from livepatch.server.errors import ConfigurationError

        raise ConfigurationError(
            f"`{args.command}` works on the server host's keys and database only: "
            "run it there, without --server."
        )
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
