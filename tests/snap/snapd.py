"""What snapd does for an installed snap's apps and hooks, without snapd.

``InstalledSnap`` unpacks a .snap with unsquashfs into $SNAP and gives each
process the environment snapd gives it: SNAP, SNAP_DATA, SNAP_COMMON,
SNAP_USER_DATA, SNAP_REVISION…, HOME, PATH from meta/snap.yaml's
``environment`` with the stand-in ``snapctl`` (tests/snap/standin) first
among the system directories, and the app's own ``environment`` (with the
snap's /run/snap.NAME moved under `base`). There is no confinement and no mount
namespace: $SNAP is a plain directory and "/" is this machine's root (the
interpreter bin/python3 links to). ``snap_set`` runs the configure hook the
way snapd does, keeping the old configuration when it fails.

Also runs inside the VM (tests/kernel/snap), so it uses only the standard
library and PyYAML.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.snap import STANDIN_SNAPCTL

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The test runner's own settings that snapd would never pass to a snap.
DROPPED = ("LIVEPATCH_STATE_DIR", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "NOTIFY_SOCKET")


def unsquash(snap_file: Path, target: Path) -> Path:
    """Unpack `snap_file` into `target` (which must not exist yet)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["unsquashfs", "-no-progress", "-quiet", "-d", str(target), str(snap_file)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"unsquashfs {snap_file} failed: {done.stderr.strip()}")
    return target


class InstalledSnap:
    def __init__(self, root: Path, base: Path, revision: str = "x1") -> None:
        self.root = root
        self.base = base
        self.revision = revision
        self.meta: dict[str, Any] = yaml.safe_load((root / "meta" / "snap.yaml").read_text())
        self.name: str = self.meta["name"]
        self.data = base / "var" / "snap" / self.name / revision
        self.common = base / "var" / "snap" / self.name / "common"
        self.user_data = base / "home" / "snap" / self.name / revision
        self.snapctl_state = base / "snapctl.json"
        self.run_dir = base / "run" / f"snap.{self.name}"
        for directory in (self.data, self.common, self.user_data):
            directory.mkdir(parents=True, exist_ok=True)

    # -- environment -----------------------------------------------------------

    def environ(
        self, extra: Mapping[str, str] | None = None, app: str | None = None
    ) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in DROPPED}
        env.update(
            SNAP=str(self.root),
            SNAP_NAME=self.name,
            SNAP_INSTANCE_NAME=self.name,
            SNAP_REVISION=self.revision,
            SNAP_VERSION=str(self.meta["version"]),
            SNAP_ARCH=self.meta["architectures"][0],
            SNAP_DATA=str(self.data),
            SNAP_COMMON=str(self.common),
            SNAP_USER_DATA=str(self.user_data),
            SNAP_USER_COMMON=str(self.user_data.parent / "common"),
            HOME=str(self.user_data),
            SNAPCTL_STATE=str(self.snapctl_state),
        )
        path = f"{STANDIN_SNAPCTL.parent}:{SYSTEM_PATH}"
        declared = self.meta.get("environment", {}).get("PATH", "$PATH")
        env["PATH"] = self._expand(declared, {"SNAP": str(self.root), "PATH": path})
        declared_app = self.meta["apps"][app].get("environment", {}) if app else {}
        for key, value in declared_app.items():
            value = self._expand(str(value), env)
            # /run/snap.NAME is the snap's own run directory: here, under `base`.
            env[key] = value.replace(f"/run/snap.{self.name}", str(self.run_dir))
        env.update(extra or {})
        return env

    @staticmethod
    def _expand(value: str, variables: Mapping[str, str]) -> str:
        return re.sub(
            r"\$(\w+)|\$\{(\w+)\}",
            lambda m: variables.get(m.group(1) or m.group(2), ""),
            value,
        )

    # -- running apps and hooks ------------------------------------------------

    def app_argv(self, app: str, *args: str) -> list[str]:
        command = self.meta["apps"][app]["command"].split()
        return [str(self.root / command[0]), *command[1:], *args]

    def run_app(
        self, app: str, *args: str, extra: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.app_argv(app, *args),
            env=self.environ(extra, app),
            cwd=self.data,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_app(
        self, app: str, *args: str, log: Path, extra: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as stream:
            return subprocess.Popen(
                self.app_argv(app, *args),
                env=self.environ(extra, app),
                cwd=self.data,
                stdout=stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run_hook(
        self, hook: str, *, extra: Mapping[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "meta" / "hooks" / hook)],
            env=self.environ(extra),
            cwd=self.data,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # -- snapd's configuration -------------------------------------------------

    def snapctl_document(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.snapctl_state.read_text())
        except FileNotFoundError:
            data = {"config": {}, "health": None, "calls": []}
        return data

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.snapctl_document()["config"])

    @property
    def health(self) -> dict[str, str] | None:
        health: dict[str, str] | None = self.snapctl_document()["health"]
        return health

    def snap_set(self, **values: Any) -> subprocess.CompletedProcess[str]:
        """`snap set NAME key=value…` (None unsets): configure runs on the new
        configuration, which snapd keeps only if the hook succeeds."""
        document = self.snapctl_document()
        old = dict(document["config"])
        for key, value in values.items():
            key = key.replace("_", "-")
            if value is None:
                document["config"].pop(key, None)
            else:
                document["config"][key] = value
        self.snapctl_state.write_text(json.dumps(document))
        done = self.run_hook("configure")
        if done.returncode != 0:
            document = self.snapctl_document()
            document["config"] = old
            self.snapctl_state.write_text(json.dumps(document))
        return done

    # -- another revision ------------------------------------------------------

    def revision_copy(self, revision: str, *, same_files: bool = False) -> InstalledSnap:
        """The next revision, as a refresh makes it: $SNAP_DATA copied to the new revision.

        Its files are a copy of this revision's (to break them), or with `same_files`
        this revision's own tree (a refresh to an identical build)."""
        root = self.root if same_files else self.root.parent / revision
        if not root.exists():
            shutil.copytree(self.root, root, symlinks=True)
        new = InstalledSnap(root, self.base, revision)
        shutil.rmtree(new.data)
        shutil.copytree(self.data, new.data, symlinks=True, ignore=_sockets)
        return new


def _sockets(directory: str, names: list[str]) -> list[str]:
    return [
        name for name in names if stat.S_ISSOCK(os.lstat(os.path.join(directory, name)).st_mode)
    ]
