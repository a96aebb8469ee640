"""The daemon's status document while confinement denies it a kernel file.

Under strict confinement, before `snap connect` has granted a plug, reading the
kernel's identity is refused (AccessDenied naming the plug). The daemon then
stays up and answers with this document, whose only error says which plug to
connect; check-health and the daemon's own health report turn it into
`blocked`. It keeps what does not need the kernel: enrolment and machine id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from livepatch import __version__
from livepatch.client.state import StateFile
from livepatch.errors import LivepatchError


def blocked_document(
    state_path: Path, error: LivepatchError, *, daemon_running: bool
) -> dict[str, Any]:
    try:
        enrolment = StateFile(state_path).load().enrolment
    except (LivepatchError, OSError):
        enrolment = None
    return {
        "Client-Version": __version__,
        "Machine-Id": enrolment.machine_id if enrolment else "",
        "Enrolled": enrolment is not None,
        "Daemon-Running": daemon_running,
        "Status": [],
        "Applied-Patches": [],
        "Errors": [{"code": error.code, "message": str(error)}],
    }
