"""The .snap `make snap` builds, checked against core24's layout (test_layout.py).

Installed, confined, refreshed and removed by the real snapd: tests/snapd.
STANDIN_SNAPCTL: a snapctl following snapd's rules for get/set/unset/set-health,
for the unit tests of the hook logic and the demo's fast path (no snapd there).
"""

from pathlib import Path

STANDIN_SNAPCTL = Path(__file__).parents[1] / "demo" / "standin" / "snapctl"
