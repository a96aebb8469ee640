"""`livepatch-admin publish` and `livepatch-admin patches ACTION`: the catalogue by hand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livepatch.rollout import Stage
from livepatch.server.admin._common import add_common_options, dump_json, table, with_service
from livepatch.server.errors import InvalidRequest

if TYPE_CHECKING:
    from livepatch.server import patches
    from livepatch.server.service import Service

SEVERITIES = ("low", "medium", "high", "critical")
"""The values of ``patches.Severity`` (kept here so that --help imports nothing heavy)."""


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
    publish.set_defaults(handler=with_service(_publish))

    parser = subparsers.add_parser("patches", help="inspect and steer published patches")
    commands = parser.add_subparsers(dest="patches_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="list patches and their rollout")
    add_common_options(listing, formats=True)
    listing.set_defaults(handler=with_service(_list))
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
        command.set_defaults(handler=with_service(run))
    tick = commands.add_parser("run-engine", help="apply the rollout engine's decisions now")
    add_common_options(tick, formats=True)
    tick.set_defaults(handler=with_service(_run_engine))


def _publish(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    try:
        module = args.module.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"Cannot read {args.module}: {error.strerror}.") from error
    from livepatch.server.admin.preflight import preflight_record

    overrides = {
        key: getattr(args, key) for key in patches.POLICY_KEYS if getattr(args, key) is not None
    }
    record = preflight_record(service, module, args.kernel, skip=args.no_preflight)
    info = patches.publish(
        service,
        patches.Publication(
            module=module,
            kernels=args.kernel,
            cves=[cve for group in args.cve for cve in group],
            severity=patches.Severity(args.severity),
            description=args.description,
            overrides=overrides,
            preflight=record,
        ),
    )
    _print_info(info, args.format)
    return 0


def _list(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    found = patches.list_patches(service)
    if args.format == "json":
        print(dump_json([_info_dict(i) for i in found]))
        return 0
    rows = [
        (
            i.patch_id,
            ",".join(i.kernels),
            i.severity,
            _state(i),
            i.stage_started,
            (i.preflight or {}).get("result", "none"),
            ",".join(i.cves),
        )
        for i in found
    ]
    headers = ("PATCH", "KERNELS", "SEVERITY", "ROLLOUT", "SINCE", "PREFLIGHT", "CVES")
    print(table(headers, rows))
    return 0


def _show(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    detail = patches.show(service, args.patch_id)
    aggregates = [
        {"stage": a.stage, "kernel": a.kernel, "applied": a.applied, "failed": a.failed}
        for a in detail.aggregates
    ]
    engine_view = {"action": detail.decision.action.value, "reason": detail.decision.reason}
    if args.format == "json":
        print(dump_json({**_info_dict(detail.info), "reports": aggregates, "engine": engine_view}))
        return 0
    info = detail.info
    print(f"{info.patch_id} (version {info.version}, module {info.module_name})")
    print(f"  kernels:  {', '.join(info.kernels)}")
    print(f"  cves:     {', '.join(info.cves)} ({info.severity})")
    print(f"  rollout:  {_state(info)} since {info.stage_started.isoformat(timespec='seconds')}")
    if info.revoked is not None:
        at = info.revoked.at.isoformat(timespec="seconds")
        print(f"  revoked:  {info.revoked.reason} (at {at})")
    elif info.halt_reason:
        print(f"  halted:   {info.halt_reason}")
    print(f"  engine:   {engine_view['action']}: {engine_view['reason']}")
    print(f"  target:   {info.target_name} sha256 {info.sha256} ({info.length} bytes)")
    print()
    rows = [(a["stage"], a["kernel"], a["applied"], a["failed"]) for a in aggregates]
    print(table(("STAGE", "KERNEL", "APPLIED", "FAILED"), rows) if rows else "No reports yet.")
    return 0


def _promote(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    to = Stage(args.to) if args.to else None
    _print_info(patches.promote(service, args.patch_id, to), args.format)
    return 0


def _halt(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    _print_info(patches.halt(service, args.patch_id, args.reason), args.format)
    return 0


def _resume(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    _print_info(patches.resume(service, args.patch_id), args.format)
    return 0


def _withdraw(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    _print_info(patches.withdraw(service, args.patch_id), args.format)
    return 0


def _revoke(service: Service, args: argparse.Namespace) -> int:
    from livepatch.server import patches

    _print_info(patches.revoke(service, args.patch_id, args.reason), args.format)
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


def _state(info: patches.PatchInfo) -> str:
    if info.withdrawn:
        return "withdrawn"
    if info.revoked is not None:
        return f"{info.state.stage.value} REVOKED"
    text = f"{info.state.stage.value} {info.state.percentage:g}%"
    return f"{text} HALTED" if info.state.halted else text


def _info_dict(info: patches.PatchInfo) -> dict[str, Any]:
    return {
        "patch_id": info.patch_id,
        "version": info.version,
        "kernels": info.kernels,
        "module_name": info.module_name,
        "target": info.target_name,
        "sha256": info.sha256,
        "length": info.length,
        "severity": info.severity,
        "description": info.description,
        "cves": info.cves,
        "preflight": info.preflight,
        "rollout": {
            "stage": info.state.stage.value,
            "percentage": info.state.percentage,
            "halted": info.state.halted,
            "halt_reason": info.halt_reason,
            "since": info.stage_started.isoformat(),
        },
        "withdrawn": info.withdrawn,
        "revoked": None if info.revoked is None else info.revoked.to_fields(),
        "created": info.created.isoformat(),
    }


def _print_info(info: patches.PatchInfo, fmt: str) -> None:
    if fmt == "json":
        print(dump_json(_info_dict(info)))
    else:
        print(f"{info.patch_id}: {_state(info)}")
