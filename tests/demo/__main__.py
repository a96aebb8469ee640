"""`make demo`: the whole stream on a real kernel, from publish to patched (tests/demo/flow.py)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from tests.demo import flow
from tests.demo.narrator import Narrator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the service and the VM running until Enter (make demo KEEP=1)",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="livepatch-demo-"))
    narrator = Narrator()
    print("livepatch demo: publish a kernel fix, patch a running kernel, roll out to a fleet")
    try:
        facts = flow.run(narrator, workdir, keep_running=_wait if args.keep_running else None)
    except Exception as error:
        print(f"\nThe demo failed after {narrator.elapsed():.0f} s: {error}", file=sys.stderr)
        traceback.print_exc()
        print(f"Work directory kept: {workdir}", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"Work directory: {workdir}")
    print(
        f"Done in {facts.total_seconds:.0f} s "
        f"(the VM booted in {facts.vm_boot_seconds:.0f} s, {facts.client})."
    )
    if not args.keep_running:
        print(
            f"Dashboard: {facts.dashboard}; it stopped with the demo: "
            "`make demo KEEP=1` keeps it running until you press Enter."
        )
    return 0 if not facts.left_running and not facts.left_listening else 1


def _wait() -> None:
    print("Everything is running: open the dashboard above. Press Enter to stop.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.readline()


if __name__ == "__main__":
    sys.exit(main())
