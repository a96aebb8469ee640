"""The self-test a new revision must pass in its post-refresh hook.

snapd runs post-refresh after linking the new revision and before starting
its services (overlord/snapstate: link-snap, …, run-hook[post-refresh],
start-snap-services). A failing hook fails the refresh and snapd undoes it,
bringing back the previous revision: this is the refresh with rollback. So the
self-test proves, for the new revision's code and the data copied into its
$SNAP_DATA:

- imports: every module the daemon, CLI and notifier load (and their
  dependencies: requests, cryptography, tuf, dbus-fast) imports;
- cli: ``$SNAP/bin/livepatch`` runs and answers ``--version`` and
  ``status --format json`` (a one-sentence livepatch error counts as an
  answer; a crash does not);
- config, state: the settings and the state record parse;
- keys: when enrolled, the pinned TUF root and the machine credential read;
- daemon: the new daemon code starts on a scratch copy of the state (not
  enrolled there, so it never checks in), answers ``status`` on its control
  socket and stops. Its kernel is read-only: it cannot load or unload.

Nothing here changes $SNAP_DATA or the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livepatch import __version__
from livepatch.client import config as settings
from livepatch.client.paths import Paths
from livepatch.client.state import CredentialFile, StateFile
from livepatch.client.status import KernelFacts
from livepatch.client.transitions import ModuleStatus
from livepatch.errors import LivepatchError

MODULES = (
    "livepatch.cli",
    "livepatch.client.daemon",
    "livepatch.client.wiring",
    "livepatch.client.api",
    "livepatch.client.metadata",
    "livepatch.kernel",
    "livepatch.trust.modsig",
    "livepatch.trust.updater",
    "livepatch.dbus.service",
    "livepatch.dbus.notifier",
    "livepatch.motd",
)
UNEXPECTED_ERROR_EXIT = 70
"""What ``livepatch.cli_support.run`` returns for a bug (an unexpected exception)."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_imports(modules: Sequence[str] = MODULES) -> Check:
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # any import failure is the finding
            failed.append(f"{name} ({type(error).__name__}: {error})")
    if failed:
        return Check("imports", False, "cannot import " + "; ".join(failed))
    return Check("imports", True, f"{len(modules)} modules import")


def check_cli(snap: Path, environ: Mapping[str, str], *, timeout: float = 60.0) -> Check:
    """``$SNAP/bin/livepatch`` as snapd runs it: its shebang finds $SNAP/bin/python3 on PATH."""
    program = snap / "bin" / "livepatch"
    env = dict(environ)
    env["PATH"] = f"{snap / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
    try:
        version = subprocess.run(
            [str(program), "--version"], env=env, capture_output=True, text=True, timeout=timeout
        )
        status = subprocess.run(
            [str(program), "status", "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check("cli", False, f"{program} did not run: {error}")
    if version.returncode != 0 or version.stdout.strip() != f"livepatch {__version__}":
        return Check(
            "cli",
            False,
            f"`livepatch --version` exited {version.returncode} and printed "
            f"{(version.stdout + version.stderr).strip()!r}, expected 'livepatch {__version__}'",
        )
    return _status_answer(status)


def _status_answer(done: subprocess.CompletedProcess[str]) -> Check:
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("Client-Version") == __version__:
        return Check("cli", True, "livepatch --version and status --format json answer")
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode not in (0, UNEXPECTED_ERROR_EXIT) and last.startswith("livepatch: "):
        return Check("cli", True, f"livepatch status answers with an error: {last}")
    return Check(
        "cli",
        False,
        f"`livepatch status --format json` exited {done.returncode}: "
        f"{(done.stderr.strip() or done.stdout.strip())[-400:]!r}",
    )


def check_config(paths: Paths) -> Check:
    try:
        config = settings.load(paths.config)
    except (LivepatchError, OSError) as error:
        return Check("config", False, str(error))
    server = config.remote_server or "no remote-server yet"
    return Check("config", True, f"settings read ({server})")


def check_state(paths: Paths) -> Check:
    try:
        state = StateFile(paths.state).load()
    except (LivepatchError, OSError) as error:
        return Check("state", False, str(error))
    enrolled = "enrolled" if state.enrolment is not None else "not enrolled"
    return Check("state", True, f"state record read ({enrolled}, {state.patch_state})")


def check_keys(paths: Paths) -> Check:
    """The trust anchor and the credential, when the machine is enrolled."""
    try:
        state = StateFile(paths.state).load()
    except (LivepatchError, OSError) as error:
        return Check("keys", False, f"the state record does not read: {error}")
    if state.enrolment is None:
        return Check("keys", True, "not enrolled, so there are no keys to read yet")
    root = paths.metadata / "root.json"
    try:
        document = json.loads(root.read_bytes())
        kind = document["signed"]["_type"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return Check("keys", False, f"the pinned root metadata {root} does not read: {error}")
    if kind != "root":
        return Check("keys", False, f"{root} holds {kind!r} metadata, not root")
    try:
        credential = CredentialFile(paths.credential).load()
    except (LivepatchError, OSError) as error:
        return Check("keys", False, f"the machine credential does not read: {error}")
    if credential is None:
        return Check("keys", False, f"enrolled but the credential {paths.credential} is missing")
    return Check("keys", True, "pinned root metadata and machine credential read")


# -- the daemon probe ----------------------------------------------------------------


class ReadOnlyKernel:
    """The real kernel port for reading; loading, disabling and unloading are refused.

    When the kernel files cannot be read (an interface is not connected), it
    reports the running release from uname and no patches, and remembers why:
    that is the machine's state, the same for any revision, so it does not
    fail the new one.
    """

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.unreadable: str | None = None

    def identity(self) -> KernelFacts:
        try:
            facts: KernelFacts = self.kernel.identity()
            return facts
        except LivepatchError as error:
            self.unreadable = str(error)
            release = os.uname().release
            return KernelFacts(release, release, os.uname().machine)

    def unsupported_reason(self) -> str | None:
        reason: str | None = self.kernel.unsupported_reason()
        return reason

    def check_loadable(self) -> None:
        self._refuse("load")

    def loaded(self) -> Mapping[str, ModuleStatus]:
        try:
            loaded: Mapping[str, ModuleStatus] = self.kernel.loaded()
            return loaded
        except LivepatchError as error:
            self.unreadable = str(error)
            return {}

    def load(self, module: Path) -> None:
        self._refuse("load")

    def disable(self, name: str) -> None:
        self._refuse("disable")

    def unload(self, name: str) -> None:
        self._refuse("unload")

    def taint(self) -> int:
        return 0

    def boot_id(self) -> str:
        return ""

    def log_seq(self) -> int:
        return -1

    def log_since(self, seq: int) -> list[str]:
        return []

    def functions(self, name: str) -> tuple[str, ...]:
        return ()

    def check_module(self, data: bytes) -> None:
        self._refuse("load")

    def _refuse(self, action: str) -> None:
        raise LivepatchError(f"The self-test daemon may not {action} patches.", code="self-test")


def _offline_service(config: object) -> Any:
    raise LivepatchError("The self-test daemon does not talk to the service.", code="self-test")


def _scratch_copy(paths: Paths, scratch: Path) -> Paths:
    """Config and state copied to `scratch`, the enrolment dropped so nothing is due."""
    copy = Paths(scratch)
    copy.ensure()
    for source in paths.root.glob("config*.json"):  # the settings and their public copy
        shutil.copy2(source, copy.root / source.name)
    state = StateFile(paths.state).load()
    StateFile(copy.state).save(dataclasses.replace(state, enrolment=None, next_check=None))
    return copy


def check_daemon(
    paths: Paths,
    *,
    kernel: Any = None,
    timeout: float = 30.0,
    scratch_parent: str | None = None,
) -> Check:
    """Start the daemon code on a scratch copy, ask it for its status, stop it."""
    from livepatch.client.checkin import Runtime
    from livepatch.client.kernelport import KernelAdapter
    from livepatch.client.wiring import metadata_factory, now

    with tempfile.TemporaryDirectory(prefix="lp-selftest-", dir=scratch_parent) as scratch:
        try:
            copy = _scratch_copy(paths, Path(scratch))
        except (LivepatchError, OSError) as error:
            return Check("daemon", False, f"cannot copy the state for the probe: {error}")
        readonly = ReadOnlyKernel(kernel if kernel is not None else KernelAdapter(Path("/")))
        runtime = Runtime(
            paths=copy,
            kernel=readonly,
            service=_offline_service,
            metadata=metadata_factory,
            clock=now,
        )
        try:
            answer = asyncio.run(_probe(runtime, timeout))
        except Exception as error:  # the daemon failing in any way is the finding
            return Check(
                "daemon", False, f"the daemon did not start: {type(error).__name__}: {error}"
            )
    status = answer.get("status") if isinstance(answer, dict) else None
    if not (answer.get("ok") and isinstance(status, dict) and "Status" in status):
        return Check("daemon", False, f"the daemon answered {answer!r} to status")
    detail = "the daemon started and answered status on its control socket"
    if readonly.unreadable:
        detail += f" (kernel files not readable here: {readonly.unreadable})"
    return Check("daemon", True, detail)


async def _probe(runtime: Any, timeout: float) -> dict[str, Any]:
    from livepatch.client import control
    from livepatch.client.daemon import Daemon

    saved = os.environ.pop("NOTIFY_SOCKET", None)  # never tell systemd the probe is ready
    daemon = Daemon(runtime, bus=None)
    task = asyncio.create_task(daemon.run())
    deadline = time.monotonic() + timeout
    try:
        while True:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the daemon exited before it answered")
            try:
                answer: dict[str, Any] = await asyncio.to_thread(
                    control.request, runtime.paths.control, "status", timeout=timeout
                )
                return answer
            except control.DaemonNotRunning:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no control socket after {timeout:g} s") from None
                await asyncio.sleep(0.05)
    finally:
        daemon.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout)
        if saved is not None:
            os.environ["NOTIFY_SOCKET"] = saved


def run(
    snap: Path,
    paths: Paths,
    environ: Mapping[str, str] = os.environ,
    *,
    daemon: Callable[[Paths], Check] = check_daemon,
) -> list[Check]:
    """Every check, in order; each one runs even when an earlier one failed."""
    return [
        check_imports(),
        check_cli(snap, environ),
        check_config(paths),
        check_state(paths),
        check_keys(paths),
        daemon(paths),
    ]
