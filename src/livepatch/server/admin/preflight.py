"""`livepatch-admin preflight MODULE.ko --kernel KEY`: the module on the real kernel first."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livepatch.server.admin._common import add_common_options, dump_json, with_service
from livepatch.server.errors import InvalidRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from livepatch.preflight.result import PreflightResult
    from livepatch.server.service import Service


def register(subparsers: Any) -> None:
    command = subparsers.add_parser(
        "preflight",
        help="boot the exact kernel in qemu and try a module there (load, health, unload)",
    )
    add_common_options(command, formats=True)
    command.add_argument("module", type=Path, metavar="MODULE.ko")
    command.add_argument("--kernel", required=True, metavar="KEY", help="kernel key to boot")
    command.add_argument(
        "--wait", type=float, default=5.0, help="seconds to exercise the patched kernel"
    )
    command.set_defaults(handler=with_service(_preflight), local_only=True)


def preflight(
    service: Service, module: bytes, kernel: str, *, wait: float = 5.0
) -> PreflightResult:
    """Sign `module` with the service's key if it is not yet (as publish does), boot
    `kernel` and run the pre-flight guest; the outcome (never raises for a bad module)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from livepatch.preflight.kernels import kernel_image
    from livepatch.preflight.vm import run_preflight
    from livepatch.trust.keys import KeyDirectory

    image = kernel_image(kernel)
    signed = service.publisher.prepare_module(module, now=service.clock())
    _, cert = KeyDirectory(service.config.keys_dir).current_signing()
    with tempfile.TemporaryDirectory(prefix="livepatch-preflight-") as work:
        from livepatch.kernel import parse_modinfo

        name = parse_modinfo(signed).name or "module"
        path = Path(work) / f"{name}.ko"
        path.write_bytes(signed)
        cert_path = Path(work) / "signing.pem"
        cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
        return run_preflight(image, path, cert_path, wait=wait)


def preflight_record(
    service: Service, module: bytes, kernels: Sequence[str], *, skip: bool
) -> dict[str, str]:
    """Run the pre-flight on every kernel (unless `skip`); the record publish signs.

    Raises InvalidRequest with the reason when the module fails on any kernel.
    """
    from livepatch.preflight.result import failure_reason
    from livepatch.server.patches import skipped_preflight

    record = skipped_preflight(kernels, service.clock())
    if skip:
        return record
    for kernel in record["kernel"].split(","):
        result = preflight(service, module, kernel)
        if not result.passed:
            raise InvalidRequest(
                f"Pre-flight refused the module: {failure_reason(result)}; fix the "
                "module, or publish with --no-preflight to skip the check."
            )
    return {**record, "result": "passed"}


def _preflight(service: Service, args: argparse.Namespace) -> int:
    from livepatch.preflight.result import render

    try:
        module = args.module.read_bytes()
    except OSError as error:
        raise InvalidRequest(f"Cannot read {args.module}: {error.strerror}.") from error
    result = preflight(service, module, args.kernel, wait=args.wait)
    if args.format == "json":
        print(dump_json(result.to_json()))
    else:
        sys.stdout.write(render(result))
    return 0 if result.passed else 1
