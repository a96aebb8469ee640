"""`livepatch-admin tokens create|list|revoke`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from livepatch.rollout import Tier
from livepatch.server.admin._common import add_common_options, dump_json, table, when, with_backend

if TYPE_CHECKING:
    from livepatch.server.admin.backend import Backend


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("tokens", help="enrolment tokens")
    commands = parser.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    create = commands.add_parser("create", help="create a token (shown once)")
    add_common_options(create, formats=True)
    create.add_argument("--machines", type=int, help="machine slots (community default: 3)")
    create.add_argument("--tier", choices=[t.value for t in Tier], default=Tier.COMMUNITY.value)
    create.set_defaults(handler=with_backend(_create))

    listing = commands.add_parser("list", help="list tokens and their machines")
    add_common_options(listing, formats=True)
    listing.set_defaults(handler=with_backend(_list))

    revoke = commands.add_parser(
        "revoke", help="stop enrolments, renewals, check-ins and reports of a token's machines"
    )
    add_common_options(revoke)
    revoke.add_argument("token", metavar="ID|HINT", help="the id or hint from `tokens list`")
    revoke.set_defaults(handler=with_backend(_revoke))


def _create(backend: Backend, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"tier": args.tier}
    if args.machines is not None:
        body["machines"] = args.machines
    created = backend.post("/tokens", body)
    if args.format == "json":
        print(dump_json(created))
    else:
        print(created["token"])
        print(
            f"Token {created['id']} ({created['tier']}, {created['machine_limit']} machines). "
            "It is shown only once: store it now."
        )
    return 0


def _list(backend: Backend, args: argparse.Namespace) -> int:
    found = backend.get("/tokens")
    if args.format == "json":
        print(dump_json(found))
        return 0
    rows = [
        (
            t["id"],
            t["hint"] + "…",
            t["tier"],
            f"{t['machines']}/{t['machine_limit']}",
            when(t["created"]),
            when(t["revoked"]),
        )
        for t in found
    ]
    print(table(("ID", "HINT", "TIER", "MACHINES", "CREATED", "REVOKED"), rows))
    return 0


def _revoke(backend: Backend, args: argparse.Namespace) -> int:
    info = backend.post(f"/tokens/{args.token}/revoke")
    print(
        f"Token {info['id']} is revoked; its {info['machines']} machines cannot renew "
        "their credentials."
    )
    return 0
