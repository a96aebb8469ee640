"""What snapd tells a hook or app about the snap it runs in (its environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from livepatch.client.paths import Paths
from livepatch.errors import LivepatchError


class NotInSnap(LivepatchError):
    code = "not-in-snap"

    def __init__(self, missing: str) -> None:
        super().__init__(
            f"${missing} is not set, so this is not running inside the snap; "
            "snapd sets it for hooks and apps."
        )


@dataclass(frozen=True)
class SnapEnvironment:
    snap: Path
    """$SNAP: the read-only snap contents of this revision."""
    data: Path
    """$SNAP_DATA: per-revision system data (the client's state directory)."""
    common: Path
    """$SNAP_COMMON: system data shared by all revisions."""
    revision: str = ""
    version: str = ""
    user_data: Path | None = None
    """$SNAP_USER_DATA, set for apps run by a user (the notifier)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> SnapEnvironment:
        for name in ("SNAP", "SNAP_DATA", "SNAP_COMMON"):
            if not environ.get(name):
                raise NotInSnap(name)
        user_data = environ.get("SNAP_USER_DATA")
        return cls(
            snap=Path(environ["SNAP"]),
            data=Path(environ["SNAP_DATA"]),
            common=Path(environ["SNAP_COMMON"]),
            revision=environ.get("SNAP_REVISION", ""),
            version=environ.get("SNAP_VERSION", ""),
            user_data=Path(user_data) if user_data else None,
        )

    @property
    def paths(self) -> Paths:
        """The client's state directory: $SNAP_DATA, as ``Paths.from_environment`` picks it."""
        return Paths(self.data)

    @property
    def journal(self) -> Path:
        """One line per hook run, kept across revisions (a revert discards $SNAP_DATA's)."""
        return self.common / "hooks.log"
