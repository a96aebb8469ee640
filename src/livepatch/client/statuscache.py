"""A cache of the status document, so `livepatch status` answers at Python's start-up cost.

Building the document means importing the state model, the kernel layer and
the reconciliation (about 100 ms of imports, six times a bare Python). But the
document is a pure function of a few inputs: the state and settings files,
the running kernel (release, boot, which livepatches are loaded, enabled, in
transition) and the client version. Whoever builds it as root (the daemon,
or a `livepatch status` run by root) stores it here with those inputs; the
fast path compares them with their current values, and on any difference
falls back to building the document. Two fields change by themselves and are
refreshed on every read: Uptime and Daemon-Running.

Standard library only, and little of it: this module is the fast path.
"""

import os

from livepatch import __version__
from livepatch.client import jsonlite

TYPE_CHECKING = False  # typing costs ~10 ms; annotations only (see livepatch.cli)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

DEFAULT_STATE_DIR = "/var/lib/livepatch"
CACHE_NAME = "status-cache.json"
INPUT_FILES = ("state.json", "config.json", "config.public.json")
LIVEPATCH_DIR = "sys/kernel/livepatch"


def state_dir(environ: "Mapping[str, str]" = os.environ) -> str:
    """The state directory: $LIVEPATCH_STATE_DIR, else $SNAP_DATA, else /var/lib/livepatch."""
    for name in ("LIVEPATCH_STATE_DIR", "SNAP_DATA"):
        if environ.get(name):
            return environ[name]
    return DEFAULT_STATE_DIR


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read().strip()
    except OSError:
        return None


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def inputs(state_dir: str, root: str = "/") -> "dict[str, Any]":
    """Everything the document depends on, as cheap-to-read values."""
    patches: dict[str, list[str | None]] = {}
    base = os.path.join(root, LIVEPATCH_DIR)
    try:
        names = sorted(os.listdir(base))
    except OSError:
        names = []
    for name in names:
        patches[name] = [
            _read(os.path.join(base, name, "enabled")),
            _read(os.path.join(base, name, "transition")),
        ]
    proc = os.path.join(root, "proc")
    return {
        "root": root,
        "version": __version__,
        "files": {name: _stat(os.path.join(state_dir, name)) for name in INPUT_FILES},
        "release": _read(os.path.join(proc, "sys/kernel/osrelease")),
        # Inside the snap this file is readable only while the kernel-state
        # plug is connected: a disconnected plug must miss the cache, so the
        # full path names the plug instead of serving an old document.
        "arch": _read(os.path.join(proc, "sys/kernel/arch")),
        "signature": _read(os.path.join(proc, "version_signature")),
        "boot": _read(os.path.join(proc, "sys/kernel/random/boot_id")),
        "livepatch": os.path.isdir(base),
        "patches": patches,
    }


def save(state_dir: str, key: "dict[str, Any]", doc: "dict[str, Any]") -> None:
    """Store `doc`, built from inputs `key` (read *before* building it), atomically."""
    path = os.path.join(state_dir, CACHE_NAME)
    tmp = f"{path}.{os.getpid()}.tmp"
    import json  # the writers are on the full path; readers use jsonlite

    data = json.dumps({"key": key, "doc": doc}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # a lost cache is rebuilt: no fsync needed


def _daemon_running(state_dir: str) -> bool:
    # Here, not at the top: `livepatch config` imports this module for state_dir()
    # alone and would pay for fcntl.
    from livepatch.client.locks import is_locked

    return is_locked(os.path.join(state_dir, "daemon.pid"))


def load(state_dir: str, root: str = "/") -> "dict[str, Any] | None":
    """The cached document if its inputs are unchanged (live fields refreshed), else None."""
    try:
        with open(os.path.join(state_dir, CACHE_NAME), "rb") as stream:
            cached = jsonlite.loads(stream.read().decode("utf-8"))
        key, doc = cached["key"], cached["doc"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(doc, dict) or key != inputs(state_dir, root):
        return None
    uptime = _read(os.path.join(root, "proc/uptime"))
    if uptime:
        doc["Uptime"] = int(float(uptime.split()[0]))
    doc["Daemon-Running"] = _daemon_running(state_dir)
    return doc
