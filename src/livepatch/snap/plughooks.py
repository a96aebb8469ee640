"""The connect-plug and disconnect-plug hooks.

- connect-plug-{kernel-state,livepatch-sysfs}: snapd has just granted the daemon
  a kernel file it was denied (snapd replaces the AppArmor profile of running
  processes); ask the running daemon to look again (``reload``), so a daemon
  blocked since install carries on without a restart and reports its health by
  itself. (connect-plug-kernel-module-control is shell, hooks/: seccomp filters
  are fixed when a process starts, so the daemon only gets finit_module from a
  restart; seen under the real snapd, EPERM until then.)
- connect-plug-etc-update-motd-d / disconnect-plug-etc-update-motd-d: install or
  remove the login-message script /etc/update-motd.d/91-livepatch. It reads the
  fragment the daemon writes in the snap's run directory and starts no Python.
"""

from __future__ import annotations

from pathlib import Path

from livepatch.client import control
from livepatch.client.errors import DaemonUnavailable
from livepatch.client.paths import Paths
from livepatch.client.store import write_atomic
from livepatch.errors import LivepatchError

KERNEL_PLUGS = ("kernel-state", "livepatch-sysfs")
MOTD_PLUG = "etc-update-motd-d"
MOTD_SCRIPT = Path("/etc/update-motd.d/91-livepatch")
MOTD_FRAGMENT = "/run/snap.livepatch/motd"
MARKER = "# Installed by the livepatch snap"
HOOKS = (
    *(f"connect-plug-{plug}" for plug in KERNEL_PLUGS),
    f"connect-plug-{MOTD_PLUG}",
    f"disconnect-plug-{MOTD_PLUG}",
)


def plug_connected(plug: str, paths: Paths) -> str:
    try:
        control.request(paths.control, "reload", timeout=20.0)
    except (DaemonUnavailable, LivepatchError, OSError) as error:
        return f"{plug} connected; the daemon will use it when it starts ({error})"
    return f"{plug} connected; the daemon looked again"


def motd_script(shipped: str, fragment: str = MOTD_FRAGMENT) -> str:
    """The shipped update-motd script, told where the confined daemon writes its fragment."""
    first, _, rest = shipped.partition("\n")
    if not first.startswith("#!"):
        raise LivepatchError("The shipped update-motd script has no #! line.")
    return (
        f"{first}\n{MARKER} (connect-plug-{MOTD_PLUG} hook); removed when the plug is "
        f"disconnected or the snap removed.\nLIVEPATCH_MOTD_FRAGMENT={fragment}\n"
        f"export LIVEPATCH_MOTD_FRAGMENT\n{rest}"
    )


def install_motd(snap: Path, target: Path = MOTD_SCRIPT) -> str:
    shipped = (snap / "usr/share/livepatch/update-motd/91-livepatch").read_text()
    write_atomic(target, motd_script(shipped).encode(), mode=0o755)
    return f"installed {target}"


def remove_motd(target: Path = MOTD_SCRIPT) -> str:
    try:
        text = target.read_text()
    except FileNotFoundError:
        return f"{target} was not there"
    if MARKER not in text:
        return f"left {target} alone: the livepatch snap did not write it"
    target.unlink()
    return f"removed {target}"


def run(name: str, snap: Path, paths: Paths) -> str:
    for plug in KERNEL_PLUGS:
        if name == f"connect-plug-{plug}":
            return plug_connected(plug, paths)
    if name == f"connect-plug-{MOTD_PLUG}":
        return install_motd(snap)
    if name == f"disconnect-plug-{MOTD_PLUG}":
        return remove_motd()
    raise LivepatchError(f"Unknown plug hook {name!r}.")
