"""Inside a VM of one of two kernels: enrol, apply what the service offers this kernel,
and try the other kernel's module through the client's vermagic check.

Usage (in the guest, as root): python -m tests.kernel.client.kernels_guest EXCHANGE NAME
EXCHANGE/input.json: {"url", "ca", "token", "foreign": path of the module built for
the other kernel}. Facts under NAME in the results line.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from livepatch.client.kernelport import KernelAdapter
from livepatch.errors import LivepatchError
from livepatch.kernel import read_identity
from tests.kernel.client.guest import Guest, cmdline, loaded_patches
from tests.kernel.guest.kmsg import dmesg_lines
from tests.vm.report import emit

MODULE = "livepatch_cmdline_v1"


def run(exchange: Path) -> dict[str, Any]:
    guest = Guest(exchange)
    facts: dict[str, Any] = {"kernel_key": read_identity().key, "cmdline_before": cmdline()}
    guest.wait_for_network()
    facts["config"] = guest.livepatch(
        "config", f"remote-server={guest.input['url']}", f"ca-certs={guest.input['ca']}"
    )
    facts["enable"] = guest.livepatch("enable", guest.input["token"])
    facts["cmdline_enabled"] = cmdline()
    facts["patches_enabled"] = loaded_patches()
    facts["status"] = guest.status()
    log_before = [line for line in dmesg_lines() if MODULE in line]
    try:
        KernelAdapter().check_module(Path(guest.input["foreign"]).read_bytes())
        facts["foreign_refused"] = None
    except LivepatchError as error:
        facts["foreign_refused"] = {"code": error.code, "message": str(error)}
    facts["kernel_log_grew"] = [line for line in dmesg_lines() if MODULE in line] != log_before
    return facts


def main(exchange: str, name: str) -> int:
    try:
        results = {name: {"ok": True, "facts": run(Path(exchange))}}
    except Exception as error:
        traceback.print_exc()
        results = {name: {"ok": False, "error": repr(error), "traceback": traceback.format_exc()}}
    emit(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
