"""The demo's guest half: python -m tests.demo.guest MODULE.ko (inside the VM)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from livepatch.kernel import KernelError, LivepatchDriver, read_capabilities, read_identity


def say(text: str) -> None:
    print(f"[guest] {text}", flush=True)


def cmdline() -> str:
    text = Path("/proc/cmdline").read_text().strip()
    return text if len(text) <= 70 else text[:67] + "..."


def main(module: Path) -> int:
    identity = read_identity()
    say(
        f"kernel {identity.release} ({identity.architecture}, flavour {identity.flavour}), "
        f"patch key {identity.key}, build id {identity.build_id}"
    )
    for check in read_capabilities().checks():
        mark = {True: "ok ", False: "NO ", None: "?? "}[check.ok]
        say(f"  {mark} {check.name}: {check.reason}")
    say(f"/proc/cmdline before: {cmdline()}")
    driver = LivepatchDriver()
    try:
        step = time.monotonic()
        loaded = driver.load(module, timeout=30)
        say(f"loaded {loaded.name}: {loaded.patch.state} in {time.monotonic() - step:.2f} s")
        say(f"/proc/cmdline after:  {cmdline()}")
        for patch in driver.list_patches():
            objects = ", ".join(f"{obj.name} patched={obj.patched}" for obj in patch.objects)
            say(f"  loaded patch {patch.name}: {patch.state} ({objects})")
        step = time.monotonic()
        disabled = driver.disable(loaded.name, timeout=30)
        say(f"disabled {disabled.name}: {disabled.outcome} in {time.monotonic() - step:.2f} s")
        say(f"/proc/cmdline again:  {cmdline()}")
        unloaded = driver.unload(loaded.name)
        say(f"unloaded {unloaded.name}: {unloaded.outcome}; patches now: {driver.list_patches()}")
    except KernelError as error:
        say(f"error [{error.code}]: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
