"""The notifier app (``livepatch.notifier``): install its autostart entry, then run.

snapd starts a user's snap apps at login from desktop files in
``$SNAP_USER_DATA/.config/autostart`` whose names match an app's
``autostart:`` key (``snap userd --autostart``); a snap cannot put files in
the user's own ~/.config/autostart. So the first run installs
livepatch-notifier.desktop there, with ``Exec=`` naming the app, and every
later login starts the notifier by itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from livepatch.client.store import write_atomic

DESKTOP_FILE = "livepatch-notifier.desktop"
SHIPPED = Path("usr/share/livepatch") / DESKTOP_FILE
"""Where the snap carries the desktop file (relative to $SNAP)."""
APP_COMMAND = "livepatch.notifier"


def autostart_entry(shipped: str) -> str:
    """The shipped desktop file with ``Exec=`` running the snap's notifier app."""
    lines = []
    for line in shipped.splitlines():
        if line.startswith("Exec="):
            line = f"Exec={APP_COMMAND}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def install_autostart(snap: Path, user_data: Path) -> Path | None:
    """Write the autostart entry; returns its path when it was written, None if current."""
    text = autostart_entry((snap / SHIPPED).read_text())
    target = user_data / ".config" / "autostart" / DESKTOP_FILE
    try:
        if target.read_text() == text:
            return None
    except FileNotFoundError:
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text.encode(), mode=0o644)
    return target


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    snap, user_data = environ.get("SNAP"), environ.get("SNAP_USER_DATA")
    if snap and user_data:
        try:
            install_autostart(Path(snap), Path(user_data))
        except OSError as error:
            print(
                f"livepatch notifier: cannot install the autostart entry: {error}", file=sys.stderr
            )
    from livepatch.dbus import notifier

    return notifier.main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
