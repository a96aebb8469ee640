"""The kernel log, as tools/testing/selftests/livepatch/functions.sh uses it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

DYNAMIC_DEBUG = Path("/sys/kernel/debug/dynamic_debug/control")


def log(message: str) -> None:
    """Write `message` into the kernel log, like the selftests' log()."""
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(message + "\n")


def dmesg_lines() -> list[str]:
    output = subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout
    return output.splitlines()


def enable_livepatch_debug() -> None:
    """The selftests' set_dynamic_debug: transition messages are pr_debug."""
    if not DYNAMIC_DEBUG.exists():
        subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=True)
    DYNAMIC_DEBUG.write_text("file kernel/livepatch/* +p\n")
    DYNAMIC_DEBUG.write_text("func klp_try_switch_task -p\n")


class LogWindow:
    """New livepatch lines since creation, filtered like check_result()."""

    def __init__(self) -> None:
        self.start = len(dmesg_lines())

    def text(self) -> str:
        lines = dmesg_lines()[self.start :]
        kept = [
            re.sub(r"^\[[ 0-9.]*\] ", "", line)
            for line in lines
            if ("livepatch:" in line or "test_klp" in line)
            and not re.search(r"(tainting|taints) kernel", line)
        ]
        return "\n".join(kept)
