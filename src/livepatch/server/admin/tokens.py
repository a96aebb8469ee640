"""`livepatch-admin tokens create|list|revoke`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from livepatch.rollout import Tier
from livepatch.server.admin._common import add_common_options, dump_json, table, with_service

if TYPE_CHECKING:
    from livepatch.server import tokens
    from livepatch.server.service import Service


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("tokens", help="enrolment tokens")
    commands = parser.add_subparsers(dest="tokens_command", metavar="ACTION", required=True)

    create = commands.add_parser("create", help="create a token (shown once)")
    add_common_options(create, formats=True)
    create.add_argument("--machines", type=int, help="machine slots (community default: 3)")
    create.add_argument("--tier", choices=[t.value for t in Tier], default=Tier.COMMUNITY.value)
    create.set_defaults(handler=with_service(_create))

    listing = commands.add_parser("list", help="list tokens and their machines")
    add_common_options(listing, formats=True)
    listing.set_defaults(handler=with_service(_list))

    revoke = commands.add_parser(
        "revoke", help="stop enrolments, renewals, check-ins and reports of a token's machines"
    )
    add_common_options(revoke)
    revoke.add_argument("token", metavar="ID|HINT", help="the id or hint from `tokens list`")
    revoke.set_defaults(handler=with_service(_revoke))


def _create(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import tokens

    with service.transaction() as session:
        created = tokens.create_token(
            session, tier=Tier(args.tier), machines=args.machines, now=service.clock()
        )
    info = created.info
    if args.format == "json":
        print(dump_json({"token": created.secret, **_as_dict(info)}))
    else:
        print(created.secret)
        print(
            f"Token {info.id} ({info.tier.value}, {info.machine_limit} machines). "
            "It is shown only once: store it now."
        )
    return 0


def _list(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import tokens

    with service.transaction() as session:
        found = tokens.list_tokens(session)
    if args.format == "json":
        print(dump_json([_as_dict(t) for t in found]))
        return 0
    rows = [
        (t.id, t.hint + "…", t.tier.value, f"{t.machines}/{t.machine_limit}", t.created, t.revoked)
        for t in found
    ]
    print(table(("ID", "HINT", "TIER", "MACHINES", "CREATED", "REVOKED"), rows))
    return 0


def _revoke(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import tokens

    with service.transaction() as session:
        info = tokens.revoke_token(session, args.token, now=service.clock())
    print(
        f"Token {info.id} is revoked; its {info.machines} machines cannot renew their credentials."
    )
    return 0


def _as_dict(info: tokens.TokenInfo) -> dict[str, Any]:
    document = dataclasses.asdict(info)
    document["tier"] = info.tier.value
    return document
