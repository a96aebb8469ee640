"""`livepatch-admin admins|audit|machines|kernels`: administrators, the audit log, the fleet."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from livepatch.server.admin._common import (
    add_common_options,
    dump_json,
    every_page,
    positive,
    table,
    when,
    with_backend,
)

if TYPE_CHECKING:
    from livepatch.server.admin.backend import Backend

ROLES = ("viewer", "operator", "admin")
STATES = ("apply-failed", "unhealthy", "crashed", "kernel-upgrade-required", "stale")
"""``fleet.MachineState`` values (kept here so that --help imports nothing heavy)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("admins", help="administrators and their API keys")
    commands = parser.add_subparsers(dest="admins_command", metavar="ACTION", required=True)
    create = commands.add_parser("create", help="create an administrator (key shown once)")
    add_common_options(create, formats=True)
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, required=True)
    create.set_defaults(handler=with_backend(_create_admin))
    listing = commands.add_parser("list", help="list administrators")
    add_common_options(listing, formats=True)
    listing.set_defaults(handler=with_backend(_list_admins))
    revoke = commands.add_parser("revoke", help="revoke an administrator's key")
    add_common_options(revoke, formats=True)
    revoke.add_argument("name")
    revoke.set_defaults(handler=with_backend(_revoke_admin))

    audit = subparsers.add_parser("audit", help="who changed what, when, from where")
    add_common_options(audit, formats=True)
    audit.add_argument(
        "--limit", type=positive, default=100, help="show at most N entries (default 100)"
    )
    audit.add_argument("--before", type=positive, metavar="ID", help="entries older than this id")
    audit.set_defaults(handler=with_backend(_audit))

    machines = subparsers.add_parser("machines", help="the enrolled machines")
    actions = machines.add_subparsers(dest="machines_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list machines, filtered")
    add_common_options(listing, formats=True)
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--kernel", metavar="KEY")
    listing.add_argument("--patch", metavar="PATCH")
    listing.add_argument("--token", type=positive, metavar="ID", help="enrolled with this token")
    listing.add_argument("--architecture", metavar="ARCH")
    listing.add_argument(
        "--limit", type=positive, metavar="N", help="show at most N machines (default: all)"
    )
    listing.set_defaults(handler=with_backend(_list_machines))
    show = actions.add_parser("show", help="a machine and its history")
    add_common_options(show, formats=True)
    show.add_argument("machine_id", metavar="MACHINE")
    show.set_defaults(handler=with_backend(_show_machine))

    kernels = subparsers.add_parser("kernels", help="kernel support")
    kernel_actions = kernels.add_subparsers(dest="kernels_command", metavar="ACTION", required=True)
    eol = kernel_actions.add_parser("end-of-life", help="set when a kernel stops being supported")
    add_common_options(eol, formats=True)
    eol.add_argument("kernel", metavar="KEY")
    eol.add_argument("date", metavar="WHEN", help="RFC 3339, e.g. 2027-01-01T00:00:00Z")
    eol.set_defaults(handler=with_backend(_end_of_life))


def _create_admin(backend: Backend, args: argparse.Namespace) -> int:
    created = backend.post("/admins", {"name": args.name, "role": args.role})
    if args.format == "json":
        print(dump_json(created))
    else:
        print(created["key"])
        print(
            f"Admin {created['name']} ({created['role']}). The key is shown only once: "
            "store it in a file readable only by you (chmod 600)."
        )
    return 0


def _list_admins(backend: Backend, args: argparse.Namespace) -> int:
    found = backend.get("/admins")
    if args.format == "json":
        print(dump_json(found))
        return 0
    rows = [(a["name"], a["role"], when(a["created"]), when(a["revoked"])) for a in found]
    print(table(("NAME", "ROLE", "CREATED", "REVOKED"), rows))
    return 0


def _revoke_admin(backend: Backend, args: argparse.Namespace) -> int:
    info = backend.post(f"/admins/{args.name}/revoke")
    print(dump_json(info) if args.format == "json" else f"Admin {info['name']}'s key is revoked.")
    return 0


def _audit(backend: Backend, args: argparse.Namespace) -> int:
    start = {"after": str(args.before)} if args.before else {}
    found = every_page(backend, "/audit", start, limit=args.limit)
    if args.format == "json":
        print(dump_json(found))
        return 0
    rows = [
        (e["id"], when(e["at"]), e["actor"], e["source"], e["action"], e["target"], e["detail"])
        for e in found
    ]
    print(table(("ID", "AT", "WHO", "FROM", "ACTION", "TARGET", "DETAIL"), rows))
    return 0


def _list_machines(backend: Backend, args: argparse.Namespace) -> int:
    filters = {
        "state": args.state,
        "kernel": args.kernel,
        "patch": args.patch,
        "token": args.token,
        "architecture": args.architecture,
    }
    found = every_page(backend, "/machines", filters, limit=args.limit)
    if args.format == "json":
        print(dump_json(found))
        return 0
    rows = [
        (
            m["machine_id"],
            m["hostname"],
            m["kernel"],
            m["patch_loaded"],
            (m["last_outcome"] or {}).get("result"),
            when(m["last_check_in"]),
            ",".join(m["states"]) or "ok",
        )
        for m in found
    ]
    headers = ("MACHINE", "HOSTNAME", "KERNEL", "PATCH", "LAST", "CHECK-IN", "STATE")
    print(table(headers, rows))
    return 0


def _show_machine(backend: Backend, args: argparse.Namespace) -> int:
    machine = backend.get(f"/machines/{args.machine_id}")
    if args.format == "json":
        print(dump_json(machine))
        return 0
    for label, key in (
        ("hostname", "hostname"),
        ("kernel", "kernel"),
        ("arch", "architecture"),
        ("tier", "tier"),
        ("token", "token_id"),
        ("client", "client_version"),
        ("enrolled", "first_seen"),
        ("check-in", "last_check_in"),
        ("patch", "patch_loaded"),
        ("supported", "supported"),
    ):
        print(f"{label + ':':11}{machine[key] if machine[key] is not None else '-'}")
    print(f"{'state:':11}{','.join(machine['states']) or 'ok'}")
    print()
    rows = [
        (when(o["received"]), o["patch_id"], o["stage"], o["result"], o["health"], o["reason"])
        for o in machine["history"]
    ]
    headers = ("RECEIVED", "PATCH", "STAGE", "RESULT", "HEALTH", "REASON")
    print(table(headers, rows) if rows else "No reports yet.")
    return 0


def _end_of_life(backend: Backend, args: argparse.Namespace) -> int:
    info = backend.put(f"/kernels/{args.kernel}/end-of-life", {"end_of_life": args.date})
    if args.format == "json":
        print(dump_json(info))
    else:
        print(f"Kernel {info['kernel']} reaches its end of life at {info['end_of_life']}.")
    return 0
