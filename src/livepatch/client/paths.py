"""Where the client keeps its files.

The state directory is ``$LIVEPATCH_STATE_DIR`` when set (tests, packagers),
else ``$SNAP_DATA`` inside the snap, else ``/var/lib/livepatch``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from livepatch.client.statuscache import DEFAULT_STATE_DIR as _DEFAULT
from livepatch.client.statuscache import state_dir

DEFAULT_STATE_DIR = Path(_DEFAULT)


@dataclass(frozen=True)
class Paths:
    root: Path
    metadata_dir: Path | None = None
    """Where update metadata is kept, when not in the state directory's ``metadata``
    (a check-in works on a staged copy: see ``livepatch.client.checkin``)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Paths:
        return cls(Path(state_dir(environ)))

    @property
    def state(self) -> Path:
        """The state document (0644: `livepatch status` reads it without root)."""
        return self.root / "state.json"

    @property
    def credential(self) -> Path:
        """The machine credential (0600)."""
        return self.root / "credential.json"

    @property
    def config(self) -> Path:
        """Settings (0600: proxy URLs may carry passwords)."""
        return self.root / "config.json"

    @property
    def config_public(self) -> Path:
        """The settings without secrets (0644), for `livepatch config` without root."""
        return self.root / "config.public.json"

    @property
    def intent(self) -> Path:
        """The apply intent, present while a patch is loading or being watched."""
        return self.root / "apply-intent.json"

    @property
    def lock(self) -> Path:
        """Serialises changes to state between the daemon and the command line."""
        return self.root / "lock"

    @property
    def checkin_lock(self) -> Path:
        """Check-ins take turns on it; held across network I/O, so nothing else waits on it."""
        return self.root / "checkin.lock"

    @property
    def daemon_lock(self) -> Path:
        """Locked by the running daemon for as long as it runs."""
        return self.root / "daemon.pid"

    @property
    def control(self) -> Path:
        """The daemon's control socket (0600, root)."""
        return self.root / "control.sock"

    @property
    def metadata(self) -> Path:
        """Trusted update metadata (the pinned root and its successors)."""
        return self.metadata_dir or self.root / "metadata"

    @property
    def modules(self) -> Path:
        """Verified modules ready for finit_module."""
        return self.root / "modules"

    @property
    def ca_bundle(self) -> Path:
        """The CA bundle written from a PEM given to `config ca-certs=`."""
        return self.root / "ca-certs.pem"

    def ensure(self) -> None:
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.metadata.mkdir(mode=0o700, exist_ok=True)
        self.modules.mkdir(mode=0o700, exist_ok=True)
