"""The system-bus service and the desktop notifier agent.

Importing this package never imports dbus-fast (the optional ``dbus`` extra):
only ``livepatch.dbus.service`` and ``livepatch.dbus.notifier`` need it.
"""

from __future__ import annotations

BUS_NAME = "io.livepatch.Livepatch1"
OBJECT_PATH = "/io/livepatch/Livepatch1"
INTERFACE = "io.livepatch.Livepatch1"

__all__ = ["BUS_NAME", "INTERFACE", "OBJECT_PATH"]
