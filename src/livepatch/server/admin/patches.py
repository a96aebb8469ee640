"""`livepatch-admin publish` and `livepatch-admin patches ACTION`: the catalogue by hand."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livepatch.rollout import Stage
from livepatch.server.admin._common import (
    add_common_options,
    dump_json,
    table,
    when,
    with_backend,
    with_service,
)
from livepatch.server.errors import InvalidRequest

if TYPE_CHECKING:
    from livepatch.server.admin.backend import Backend
    from livepatch.server.service import Service

SEVERITIES = ("low", "medium", "high", "critical")
"""The values of ``patches.Severity`` (kept here so that --help imports nothing heavy)."""
POLICY_KEYS = (
    "canary_percentage",
    "moderate_percentage",
    "canary_soak_hours",
    "moderate_soak_hours",
    "minimum_applied",
)
"""``patches.POLICY_KEYS``, likewise."""


def register(subparsers: Any) -> None:
    publish = subparsers.add_parser("publish", help="sign and publish a livepatch module")
    add_common_options(publish, formats=True)
    publish.add_argument("module", type=Path, metavar="MODULE.ko")
    publish.add_argument(
        "--kernel",
        action="append",
        required=True,
        metavar="KEY",
        help="kernel key the patch applies to (repeatable)",
    )
    publish.add_argument(
        "--cve",
        action="append",
        required=True,
        metavar="ID",
        nargs="+",
        help="CVE ids fixed by the patch",
    )
    publish.add_argument("--severity", required=True, choices=SEVERITIES)
    publish.add_argument("--description", required=True)
    publish.add_argument("--canary-percentage", type=float)
    publish.add_argument("--moderate-percentage", type=float)
    publish.add_argument("--canary-soak-hours", type=float)
    publish.add_argument("--moderate-soak-hours", type=float)
    publish.add_argument(
        "--no-preflight",
        action="store_true",
        help="skip the pre-flight on each kernel (the patch is marked as not pre-flighted)",
    )
    publish.add_argument(
        "--minimum-applied",
        type=int,
        metavar="N",
        help="healthy reports a stage needs before it is promoted (default: the server's)",
    )
    publish.set_defaults(handler=with_backend(_publish))

    parser = subparsers.add_parser("patches", help="inspect and steer published patches")
    commands = parser.add_subparsers(dest="patches_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="list patches and their rollout")
    add_common_options(listing, formats=True)
    listing.set_defaults(handler=with_backend(_list))
    for name, help_text, run in (
        ("show", "show a patch, its reports and the engine's view", _show),
        ("promote", "move a patch to the next (or given) stage now", _promote),
        ("halt", "stop a patch's rollout", _halt),
        ("resume", "lift a halt", _resume),
        ("withdraw", "remove a patch from the signed metadata", _withdraw),
        ("revoke", "roll a patch back on every machine that has it (signed)", _revoke),
    ):
        command = commands.add_parser(name, help=help_text)
        add_common_options(command, formats=True)
        command.add_argument("patch_id", metavar="PATCH")
        if name == "promote":
            command.add_argument("--to", choices=[s.value for s in Stage])
        if name == "halt":
            command.add_argument("--reason", default="halted by an administrator")
        if name == "revoke":
            command.add_argument(
                "--reason", required=True, help="why, shown to every machine's administrator"
            )
        command.set_defaults(handler=with_backend(run))
    tick = commands.add_parser("run-engine", help="apply the rollout engine's decisions now")
    add_common_options(tick, formats=True)
    tick.set_defaults(handler=with_service(_run_engine), local_only=True)


def _publish(backend: Backend, args: argparse.Namespace) -> int:
    try:
        module = args.module.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"Cannot read {args.module}: {error.strerror}.") from error
    overrides = {key: getattr(args, key) for key in POLICY_KEYS if getattr(args, key) is not None}
    body: dict[str, Any] = {
        "module_base64": base64.b64encode(module).decode(),
        "kernels": args.kernel,
        "cves": [cve for group in args.cve for cve in group],
        "severity": args.severity,
        "description": args.description,
        "overrides": overrides,
    }
    if not args.no_preflight:
        from livepatch.server.admin.backend import Local
        from livepatch.server.admin.preflight import preflight_record

        if not isinstance(backend, Local):
            raise InvalidRequest(
                "The pre-flight boots each kernel on the service's host, which --server "
                "cannot do: publish on that host, or add --no-preflight (the patch is then "
                "marked as not pre-flighted)."
            )
        # Boots each kernel here, with the service's key; a publication without
        # this record (--no-preflight, or through the admin API) is marked skipped.
        body["preflight"] = preflight_record(backend.service, module, args.kernel, skip=False)
    info = backend.post("/patches", body)
    _print_info(info, args.format)
    return 0


def _list(backend: Backend, args: argparse.Namespace) -> int:
    found = backend.get("/patches")
    if args.format == "json":
        print(dump_json(found))
        return 0
    rows = [
        (
            i["patch_id"],
            ",".join(i["kernels"]),
            i["severity"],
            _state(i),
            when(i["rollout"]["since"]),
            (i["preflight"] or {}).get("result", "none"),
            ",".join(i["cves"]),
        )
        for i in found
    ]
    headers = ("PATCH", "KERNELS", "SEVERITY", "ROLLOUT", "SINCE", "PREFLIGHT", "CVES")
    print(table(headers, rows))
    return 0


def _show(backend: Backend, args: argparse.Namespace) -> int:
    detail = backend.get(f"/patches/{args.patch_id}")
    if args.format == "json":
        print(dump_json(detail))
        return 0
    rollout, engine_view = detail["rollout"], detail["engine"]
    print(f"{detail['patch_id']} (version {detail['version']}, module {detail['module_name']})")
    print(f"  kernels:  {', '.join(detail['kernels'])}")
    print(f"  cves:     {', '.join(detail['cves'])} ({detail['severity']})")
    print(f"  rollout:  {_state(detail)} since {rollout['since'][:19]}")
    if detail["revoked"] is not None:
        print(f"  revoked:  {detail['revoked']['reason']} (at {detail['revoked']['at']})")
    elif rollout["halt_reason"]:
        print(f"  halted:   {rollout['halt_reason']}")
    print(f"  engine:   {engine_view['action']}: {engine_view['reason']}")
    print(f"  target:   {detail['target']} sha256 {detail['sha256']} ({detail['length']} bytes)")
    print()
    rows = [(a["stage"], a["kernel"], a["applied"], a["failed"]) for a in detail["reports"]]
    print(table(("STAGE", "KERNEL", "APPLIED", "FAILED"), rows) if rows else "No reports yet.")
    return 0


def _promote(backend: Backend, args: argparse.Namespace) -> int:
    _print_info(backend.post(f"/patches/{args.patch_id}/promote", {"to": args.to}), args.format)
    return 0


def _halt(backend: Backend, args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    _print_info(backend.post(f"/patches/{args.patch_id}/halt", body), args.format)
    return 0


def _resume(backend: Backend, args: argparse.Namespace) -> int:
    _print_info(backend.post(f"/patches/{args.patch_id}/resume"), args.format)
    return 0


def _withdraw(backend: Backend, args: argparse.Namespace) -> int:
    _print_info(backend.post(f"/patches/{args.patch_id}/withdraw"), args.format)
    return 0


def _revoke(backend: Backend, args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    _print_info(backend.post(f"/patches/{args.patch_id}/revoke", body), args.format)
    return 0


def _run_engine(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    decisions = patches.apply_engine(service)
    if args.format == "json":
        print(
            dump_json(
                [
                    {"patch_id": p, "action": d.action.value, "reason": d.reason}
                    for p, d in decisions
                ]
            )
        )
    elif not decisions:
        print("Nothing to promote or halt.")
    for patch_id, decision in decisions if args.format != "json" else ():
        print(f"{patch_id}: {decision.action.value}: {decision.reason}")
    return 0


def _state(info: dict[str, Any]) -> str:
    if info["withdrawn"]:
        return "withdrawn"
    rollout = info["rollout"]
    if info["revoked"] is not None:
        return f"{rollout['stage']} REVOKED"
    text = f"{rollout['stage']} {rollout['percentage']:g}%"
    return f"{text} HALTED" if rollout["halted"] else text


def _print_info(info: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(dump_json(info))
    else:
        print(f"{info['patch_id']}: {_state(info)}")
