"""Inside the pre-flight VM: verify, load, exercise, judge, disable and unload one module.

Usage (as root, in the VM): python -m livepatch.preflight.guest MODULE CERT KERNEL WAIT

Uses the client's own pieces: the module signature is verified against the
service's signing certificate CERT (PEM) as the client verifies it, the
vermagic is checked as the client checks it, and the module goes through
``livepatch.client.kernelport.KernelAdapter`` (finit_module, the transition,
disable, unload). Between load and disable the kernel is exercised for WAIT
seconds (files under /proc a patch commonly touches are read, processes are
started), then judged with ``livepatch.client.health``. Prints one results
line (RESULTS_MARKER + JSON) and exits 0 whatever the outcome.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from livepatch.client import health
from livepatch.client.kernelport import KernelAdapter, LoadTimings
from livepatch.errors import LivepatchError
from livepatch.preflight.result import RESULTS_MARKER, PreflightResult

EXERCISE_FILES = (
    "/proc/cmdline",
    "/proc/version",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/self/status",
    "/proc/self/maps",
    "/proc/modules",
)
MAX_LOG_LINES = 40


def exercise(seconds: float) -> None:
    """A small, generic workload for `seconds`: files read by child processes, so an
    oops in a patched function kills a child (and is judged), not this runner."""
    deadline = time.monotonic() + seconds
    while True:
        subprocess.run(
            ["cat", *EXERCISE_FILES],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=30,
        )
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def run(module: Path, cert_path: Path, kernel: str, wait: float) -> PreflightResult:
    from cryptography import x509

    from livepatch.kernel import check_built_for
    from livepatch.trust.errors import ModuleSignatureError
    from livepatch.trust.modsig import verify_module

    adapter = KernelAdapter(timings=LoadTimings(timeout=60.0))
    data = module.read_bytes()
    name = module.name.removesuffix(".ko")
    seq, taint_before = adapter.log_seq(), adapter.taint()

    def failed(reason: str) -> PreflightResult:
        log = (adapter.log_since(seq) or [])[-MAX_LOG_LINES:]
        return PreflightResult(kernel, name, "failed", reason=reason, log=log)

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        verify_module(data, [cert], now=datetime.now(UTC))
        name = check_built_for(data, adapter.identity().release).name or name
    except (ModuleSignatureError, LivepatchError) as error:
        return failed(str(error))
    started = time.monotonic()
    try:
        adapter.load(module)
    except LivepatchError as error:
        return failed(str(error))
    transition_ms = int((time.monotonic() - started) * 1000)
    functions = adapter.functions(name)
    exercise(wait)
    status = adapter.loaded().get(name)
    verdict = health.judge(
        module=name,
        functions=functions,
        taint_before=taint_before,
        taint_after=adapter.taint(),
        log=adapter.log_since(seq),
        enabled=status is not None and status.enabled,
    )
    reason, unloaded = "", False
    try:
        adapter.disable(name)
        adapter.unload(name)
        unloaded = True
    except LivepatchError as error:
        reason = str(error)
    return PreflightResult(
        kernel,
        name,
        "passed",
        reason=reason,
        transition_ms=transition_ms,
        health=verdict.name,
        evidence=verdict.evidence,
        unloaded=unloaded,
        log=(adapter.log_since(seq) or [])[-MAX_LOG_LINES:],
    )


def main(argv: list[str]) -> int:
    import json

    module, cert, kernel, wait = argv
    result = run(Path(module), Path(cert), kernel, float(wait))
    print(RESULTS_MARKER + json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
