"""The snap as users get it: build, unpack, run its apps and hooks (see snapd.py)."""

from pathlib import Path

STANDIN_SNAPCTL = Path(__file__).parent / "standin" / "snapctl"
