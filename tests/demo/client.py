"""The one place that says how the VM runs the livepatch client: the packaged snap.

`build_snap()` builds the snap the way `make snap` does (livepatch.snap.build,
cached; the .snap's path is the last line it prints) and `snap_client()`
describes how the VM runs it as snapd would: the .snap's squashfs mounted
read-only as $SNAP, the apps' commands and environment read from its
meta/snap.yaml, $SNAP_DATA and $SNAP_COMMON created, and its install hook
run (with a stand-in snapctl) before anything else. Every client command
of the demo (`livepatch enable`, `refresh`, `status`, the daemon) is built
from that `Client`.

`source_tree_client()` is the client from the repository's venv, for
comparing the two.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.vm.qemu import REPO, VENV_BIN

GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MOTD_SCRIPT = REPO / "interfaces" / "update-motd" / "91-livepatch"
"""Installed on the host (/etc/update-motd.d) next to the snap; the snap does not ship it."""
SNAP_LIBRARY_PATH = "/var/lib/snapd/lib/gl:/var/lib/snapd/lib/gl32:/var/lib/snapd/void"
"""What snapd sets for every app (cmd/snap-exec, snap/snapenv)."""
STANDIN_SNAPCTL = REPO / "tests" / "demo" / "standin"
"""The demo's fast path runs hooks without snapd: a stand-in snapctl (README there)."""
CORE24_PYTHON = "/root/.pyenv/versions/3.12.1/bin/python3.12"
BASE_PYTHON_SETUP = (
    # The snap links bin/python3 to core24's /usr/bin/python3.12; the demo VM shares
    # the host's /usr (Debian 12: 3.11), so an overlay on /usr/bin adds the link.
    "if [ ! -e /usr/bin/python3.12 ]; then modprobe overlay; mkdir -p /run/core24/u "
    "/run/core24/w; mount -t overlay overlay -o lowerdir=/usr/bin,upperdir=/run/core24/u,"
    f"workdir=/run/core24/w /usr/bin; ln -s {CORE24_PYTHON} /usr/bin/python3.12; fi"
)


class ClientError(Exception):
    """The snap could not be built or read."""


@dataclass(frozen=True)
class Client:
    description: str
    cli: tuple[str, ...]
    """argv of the `livepatch` command."""
    daemon: tuple[str, ...]
    """argv of the daemon (foreground)."""
    state_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    """Environment of every client process in the VM."""
    setup: str = ""
    """Shell commands the VM runs first (as root), to install the client."""
    install_hook: tuple[str, ...] = ()
    hook_env: dict[str, str] = field(default_factory=dict)
    motd_script: Path = MOTD_SCRIPT

    def livepatch(self, *args: str) -> list[str]:
        return [*self.cli, *args]


def source_tree_client() -> Client:
    """The client installed in the repository's venv (`pip install -e .`)."""
    livepatch = str(VENV_BIN / "livepatch")
    return Client(
        description="the client from the source tree",
        cli=(livepatch,),
        daemon=(livepatch, "daemon"),
        state_dir=Path("/var/lib/livepatch"),
    )


def build_snap() -> tuple[Path, str]:
    """`make snap`'s build (cached by its inputs): the .snap and what the build said."""
    process = subprocess.run(
        [sys.executable, "-m", "livepatch.snap.build"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines or not lines[-1].endswith(".snap"):
        raise ClientError(f"make snap failed:\n{process.stdout}{process.stderr}")
    return Path(lines[-1]), lines[-2] if len(lines) > 1 else ""


def snap_yaml(snap: Path) -> dict[str, object]:
    text = subprocess.run(
        ["unsquashfs", "-cat", str(snap), "meta/snap.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ClientError(f"{snap} has no readable meta/snap.yaml.")
    return document


def expand(value: str, env: Mapping[str, str]) -> str:
    """Shell-style $VAR, ${VAR} and ${VAR:+WORD}, as snapd expands snap.yaml's environment."""
    value = re.sub(
        r"\$\{(\w+):\+([^}]*)\}",
        lambda m: expand(m.group(2), env) if env.get(m.group(1)) else "",
        value,
    )
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def snap_client(snap: Path, revision: str = "x1") -> Client:
    """How snapd would run `snap` (a locally installed revision `revision`) in the VM."""
    meta = snap_yaml(snap)
    name = str(meta["name"])
    mount = Path(f"/run/snap/{name}/{revision}")  # snapd: /snap/NAME/REV (/ is read-only here)
    data = Path(f"/var/snap/{name}/{revision}")
    common = Path(f"/var/snap/{name}/common")
    env = {
        "SNAP": str(mount),
        "SNAP_DATA": str(data),
        "SNAP_COMMON": str(common),
        "SNAP_NAME": name,
        "SNAP_INSTANCE_NAME": name,
        "SNAP_REVISION": revision,
        "SNAP_VERSION": str(meta.get("version", "")),
        "SNAP_ARCH": "amd64",
        "SNAP_LIBRARY_PATH": SNAP_LIBRARY_PATH,
        "PATH": GUEST_PATH,
    }
    environment = meta.get("environment") or {}
    assert isinstance(environment, dict)
    for key, value in environment.items():
        env[str(key)] = expand(str(value), env)
    apps = meta.get("apps")
    assert isinstance(apps, dict)

    def command(app: str) -> tuple[str, ...]:
        words = str(apps[app]["command"]).split()
        return (str(mount / words[0]), *words[1:])

    daemons = [app for app, spec in apps.items() if spec.get("daemon")]
    if name not in apps or len(daemons) != 1:
        raise ClientError(f"{snap}: expected the app {name!r} and one daemon, found {list(apps)}.")
    setup = (
        "set -e; modprobe squashfs; modprobe loop; "
        f"mkdir -p {mount} {data} {common}; "
        f"mount -t squashfs -o ro,nodev,loop {snap} {mount}; " + BASE_PYTHON_SETUP
    )
    listing = subprocess.run(
        ["unsquashfs", "-l", str(snap), "meta/hooks"], capture_output=True, text=True, check=False
    ).stdout
    hook = (str(mount / "meta/hooks/install"),) if "meta/hooks/install" in listing else ()
    return Client(
        description=f"the snap {snap.name}",
        cli=command(name),
        daemon=command(daemons[0]),
        state_dir=data,
        env=env,
        setup=setup,
        install_hook=hook,
        hook_env={
            "PATH": f"{STANDIN_SNAPCTL}:{env['PATH']}",
            "SNAPCTL_STATE": str(common / "snapctl.json"),
        },
    )
