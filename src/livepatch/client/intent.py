"""The apply intent: written durably before a patch is loaded, cleared once it is judged.

Like Canonical's crash lockfile, but reported: the file names the patch and
the boot it was loaded in. Found at start-up with another boot's id, it means
the machine crashed or was reset while the patch was young, so that patch is
never loaded again automatically (see ``transitions.crashed``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from livepatch.client.errors import CorruptState
from livepatch.client.store import remove_durably, write_atomic


@dataclass(frozen=True)
class Intent:
    patch_id: str
    version: str
    module_name: str
    kernel: str
    boot_id: str
    at: datetime


def from_earlier_boot(intent: Intent | None, boot_id: str) -> bool:
    return intent is not None and intent.boot_id != boot_id


class IntentFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Intent | None:
        try:
            data = json.loads(self.path.read_bytes())
            return Intent(
                patch_id=str(data["patch_id"]),
                version=str(data["version"]),
                module_name=str(data["module_name"]),
                kernel=str(data["kernel"]),
                boot_id=str(data["boot_id"]),
                at=datetime.fromisoformat(data["at"]),
            )
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as error:
            raise CorruptState(str(self.path), str(error) or type(error).__name__) from error

    def save(self, intent: Intent) -> None:
        """Durable before it returns: file and directory are flushed (``write_atomic``)."""
        data = {**vars(intent), "at": intent.at.isoformat()}
        write_atomic(self.path, json.dumps(data).encode() + b"\n", mode=0o644)

    def clear(self) -> None:
        remove_durably(self.path)
