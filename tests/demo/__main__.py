"""Run the interim demo: python -m tests.demo"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.vm import BuildError, VmError, build_modules, default_release, python_in_vm

SAMPLE = Path(__file__).resolve().parents[1] / "kernel" / "modules" / "cmdline"


def main() -> int:
    started = time.monotonic()
    release = default_release()
    print(f"[demo] kernel {release}; building the sample livepatch against its headers")
    step = time.monotonic()
    try:
        module = _sample_module()
    except BuildError as error:
        print(f"[demo] build failed: {error}", file=sys.stderr)
        return 1
    print(f"[demo] built {module.name} in {time.monotonic() - step:.1f} s (cached afterwards)")
    print("[demo] booting the kernel in qemu (TCG, about 30 s) and running the demo inside")
    try:
        result = python_in_vm("tests.demo.guest", str(module), timeout=240)
    except VmError as error:
        print(f"[demo] {error}", file=sys.stderr)
        return 1
    for line in result.output.splitlines():
        if line.startswith("[guest]"):
            print(line)
    if result.returncode != 0:
        print(f"[demo] the guest failed:\n{result.output}", file=sys.stderr)
        return 1
    print(f"[demo] VM boot + guest run took {result.duration:.1f} s")
    print(f"[demo] done in {time.monotonic() - started:.1f} s")
    return 0


def _sample_module() -> Path:
    return build_modules(SAMPLE)["livepatch_cmdline_v1"]


if __name__ == "__main__":
    sys.exit(main())
