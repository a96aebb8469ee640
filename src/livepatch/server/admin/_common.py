"""What the token and patch commands share: locating the service and printing.

Nothing heavy (the database layer, the web stack) is imported until a
command runs, so that ``livepatch-admin --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from livepatch.server.cli import add_location_options, config_from
from livepatch.server.errors import ServerError

if TYPE_CHECKING:
    from livepatch.server.admin.backend import Backend
    from livepatch.server.service import Service


def add_common_options(parser: argparse.ArgumentParser, *, formats: bool = False) -> None:
    add_location_options(parser)
    if formats:
        parser.add_argument("--format", choices=("table", "json"), default="table")


def open_service(args: argparse.Namespace) -> Service:
    """The service over the same data directory and database as `livepatch-server`."""
    from livepatch.server.private import private_directory
    from livepatch.server.service import Service

    config = config_from(args)
    private_directory(config.data_dir)
    service = Service(config)
    service.database.migrate()
    return service


def with_service(
    run: Callable[[Service, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        service = open_service(args)
        try:
            return run(service, args)
        finally:
            service.close()

    return handler


def with_backend(
    run: Callable[[Backend, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A handler running `run` against the local service or the --server one."""

    def handler(args: argparse.Namespace) -> int:
        from livepatch.server.admin.backend import open_backend

        backend = open_backend(args)
        try:
            return run(backend, args)
        finally:
            backend.close()

    return handler


def every_page(
    backend: Backend, path: str, params: dict[str, Any], *, limit: int | None, page: int = 1000
) -> list[Any]:
    """The items of a paged listing, following each page's ``next``, at most `limit` of them."""
    items: list[Any] = []
    after: str | None = None
    while limit is None or len(items) < limit:
        size = page if limit is None else min(page, limit - len(items))
        answer = backend.get(path, {**params, "limit": size, "after": after})
        items.extend(answer["items"])
        if answer["next"] is None:
            break
        if answer["next"] == after:
            raise ServerError(f"The service sent page {after!r} of {path} twice; stopping.")
        after = answer["next"]
    return items


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def when(text: str | None) -> str:
    """An ISO timestamp from a document, shortened for a table."""
    return text[:19].replace("T", " ") if text else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return str(value)
