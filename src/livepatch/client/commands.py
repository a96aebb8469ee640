"""What each ``livepatch`` subcommand does, apart from parsing and printing.

Each function takes the runtime (paths and ports) and returns plain values;
``livepatch.cli`` prints them. Commands that change the machine take the state
lock, so they never interleave with a daemon's check-in.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from livepatch.client import config as settings
from livepatch.client import control, statuscache, transitions
from livepatch.client.checkin import CheckIn, Outcome, Runtime, effective_tier
from livepatch.client.errors import (
    AlreadyEnabled,
    CorruptState,
    InvalidConfig,
    NeedsRoot,
    NotConfigured,
    NotEnabled,
    SettingsNeedRoot,
    TokenUnreadable,
    UnloadRefused,
    UnsupportedKernel,
)
from livepatch.client.host import hostname, machine_id, read_host
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.paths import Paths
from livepatch.client.state import (
    Crash,
    Credential,
    CredentialFile,
    Enrolment,
    ErrorRecord,
    State,
    StateFile,
)
from livepatch.client.status import document
from livepatch.client.store import is_locked, locked, write_atomic
from livepatch.errors import LivepatchError

log = logging.getLogger(__name__)


def require_root(
    command: str, geteuid: Callable[[], int] | None = None, *, purpose: str = ""
) -> None:
    if (geteuid or os.geteuid)() != 0:
        raise NeedsRoot(command, purpose)


def daemon_running(paths: Paths) -> bool:
    return is_locked(paths.daemon_lock)


def _cache_key(rt: Runtime) -> dict[str, Any] | None:
    """The status cache's inputs when this runtime reads a kernel tree and may write.

    The key names the kernel's root, so only a cache built from the real machine's
    ``/`` ever serves `livepatch status`'s fast path.
    """
    kernel = rt.kernel
    if not isinstance(kernel, KernelAdapter) or not os.access(rt.paths.root, os.W_OK):
        return None
    return statuscache.inputs(str(rt.paths.root), str(kernel.root))


def status(rt: Runtime) -> dict[str, Any]:
    """The status document; works without root (reads the state file, not the socket).

    As root on the real machine it also refreshes the status cache (see
    ``statuscache``), which lets the next `livepatch status` skip this work.
    """
    key = _cache_key(rt)  # read before the inputs themselves: a change in between misses
    state = StateFile(rt.paths.state).load()
    try:
        identity = rt.kernel.identity()
        state = transitions.reconcile(state, identity.key, rt.kernel.loaded())
    except (LivepatchError, OSError) as error:
        log.debug("status without reconciling with the kernel: %s", error)
        identity = rt.kernel.identity()
        key = None
        if isinstance(error, LivepatchError) and error.code == "access-denied":
            # a plug missing (livepatch-sysfs): the patches shown are the record's,
            # unconfirmed; the first error says which plug to connect
            denied = ErrorRecord(error.code, " ".join(str(error).split()))
            state = dataclasses.replace(state, errors=(denied, *state.errors))
    try:
        config = readable_config(rt.paths)
    except LivepatchError:
        config = settings.Config()
    doc = document(
        state,
        kernel=identity,
        host=read_host(),
        tier=effective_tier(state, config).value,
        daemon_running=daemon_running(rt.paths),
    )
    if key is not None:
        try:
            statuscache.save(str(rt.paths.root), key, doc)
        except OSError as error:
            log.debug("status cache not written: %s", error)
    return doc


MAX_TOKEN = 1024
STDIN = "-"
"""Bytes; tokens are far shorter, this only bounds what a wrong file costs."""


def read_token(argument: str | None, path: str | None, stdin: BinaryIO) -> str:
    """The enrolment token: `argument`, or read from the file at `path` ('-' is stdin).

    A token given as an argument is visible to every local user in the process
    list while `livepatch enable` runs; from a file or stdin it is not.
    """
    if (argument is None) == (path is None):
        raise TokenUnreadable(
            "Give the token either as an argument or with --token-file PATH "
            "(--token-file - reads it from standard input), not both."
        )
    if argument is not None:
        return argument
    where = "standard input" if path == STDIN else f"the token file {path}"
    try:
        if path == STDIN:
            data = stdin.read(MAX_TOKEN + 1)
        else:
            with Path(str(path)).open("rb") as file:
                data = file.read(MAX_TOKEN + 1)
    except OSError as error:
        raise TokenUnreadable(
            f"Cannot read {where} ({error.strerror or error}); check the path and its permissions."
        ) from None
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        token = ""
    if len(data) > MAX_TOKEN or not token or any(char.isspace() for char in token):
        raise TokenUnreadable(
            f"{where[0].upper()}{where[1:]} does not hold one token; put just the token "
            "in it (a trailing newline is fine)."
        )
    return token


@dataclass(frozen=True)
class Enabled:
    machine_id: str
    tier: str
    outcome: Outcome | None
    """The inline check's outcome; None when the daemon was asked to check."""
    daemon_answer: dict[str, Any] | None = None


def _last_credential(path: Path) -> str | None:
    """The credential left from an earlier enrolment (even expired), the service's proof
    that a re-enrolment is this machine and not another claiming its id."""
    try:
        credential = CredentialFile(path).load()
    except CorruptState:
        return None
    return None if credential is None else credential.token


def enable(rt: Runtime, token: str) -> Enabled:
    paths = rt.paths
    paths.ensure()
    config = settings.load(paths.config)
    if not config.remote_server:
        raise NotConfigured()
    with locked(paths.lock):
        states = StateFile(paths.state)
        state = states.load()
        if state.enrolment is not None:
            raise AlreadyEnabled()
        identity = rt.kernel.identity()
        reason = rt.kernel.unsupported_reason()
        if reason is not None:
            raise UnsupportedKernel(identity.release, reason)
        result = rt.service(config).enrol(
            token=token,
            machine_id=machine_id(),
            hostname=hostname(),
            kernel=identity.key,
            architecture=identity.architecture,
            proof=_last_credential(paths.credential),
        )
        _reset_metadata(paths)
        write_atomic(paths.metadata / "root.json", result.root, mode=0o644)
        credential = result.credential
        CredentialFile(paths.credential).save(
            Credential(credential.token, credential.expires, credential.issued or rt.clock())
        )
        enrolment = Enrolment(
            result.machine_id, result.tier, config.remote_server, rt.clock(), identity.key
        )
        states.save(transitions.enrolled(state, enrolment))
    answer = _ask_daemon(paths, "refresh")
    if answer is not None:
        return Enabled(result.machine_id, result.tier, None, answer)
    return Enabled(result.machine_id, result.tier, CheckIn(rt).run())


def _reset_metadata(paths: Paths) -> None:
    shutil.rmtree(paths.metadata, ignore_errors=True)
    paths.metadata.mkdir(mode=0o700)


def _ask_daemon(paths: Paths, command: str) -> dict[str, Any] | None:
    """The daemon's answer, or None when no daemon runs."""
    if not daemon_running(paths):
        return None
    try:
        return control.request(paths.control, command)
    except control.DaemonNotRunning:
        return None


def clear_crash(rt: Runtime) -> Crash | None:
    """Forget the recorded crash, so its patch may be loaded again; the crash, or None.

    The running daemon is asked to reload, so its status and next check see it.
    """
    with locked(rt.paths.lock):
        states = StateFile(rt.paths.state)
        state = states.load()
        crash = state.crashed
        if crash is None:
            return None
        states.save(transitions.crash_cleared(state))
    _ask_daemon(rt.paths, "reload")
    return crash


@dataclass(frozen=True)
class Disabled:
    unloaded: tuple[str, ...]
    kept: tuple[str, ...]
    """Our modules left loaded in the kernel."""
    service_error: LivepatchError | None
    """Why the service could not be told (the machine is disabled locally anyway, and
    keeps its credential: the proof that a later `enable` is this machine)."""
    refused: tuple[UnloadRefused, ...] = ()
    """With `unload`: one error for each module the kernel would not take out."""


def disable(rt: Runtime, *, unload: bool) -> Disabled:
    """De-enrol: tell the service, forget the enrolment locally, then (with `unload`)
    disable and unload our patches.

    The state lock is not held while the service is told, only around reading
    the enrolment and changing the state.

    The local de-enrolment is saved before the kernel is asked anything, so a
    patch the kernel will not let go of never leaves the machine half enrolled;
    such a patch is reported in `refused` and stays loaded (never forced).

    When the service could not be told, its record of the machine lives on and
    only the machine's credential can take it over again (re-enrolment needs
    proof, see ``enable``): the credential file is kept, 0600, for the next
    `enable`. It is removed once the service has forgotten the machine.
    """
    paths = rt.paths
    states = StateFile(paths.state)
    credentials = CredentialFile(paths.credential)
    with locked(paths.lock):
        enrolment = states.load().enrolment
        if enrolment is None:
            raise NotEnabled()
        credential = credentials.load()
    # The service is told without the state lock held: a slow service must not lock
    # out `config` or the daemon meanwhile.
    service_error: LivepatchError | None = None
    if credential is not None:
        try:
            config = settings.load(paths.config)
            rt.service(config).deregister(enrolment.machine_id, credential)
        except LivepatchError as error:
            service_error = error
    with locked(paths.lock):
        state = states.load()
        if state.enrolment != enrolment:  # disabled (and maybe enabled again) meanwhile
            raise NotEnabled()
        if service_error is None:
            credentials.remove()
        _reset_metadata(paths)
        state = transitions.disenrolled(state, unloaded=False)
        states.save(state)
        ours = _our_loaded_modules(rt, state)
        unloaded: list[str] = []
        refused: list[UnloadRefused] = []
        if unload:
            for name in ours:
                failure = _disable_and_unload(rt, name)
                if failure is None:
                    unloaded.append(name)
                else:
                    refused.append(failure)
            if refused:
                _save_reconciled(rt, states, state)
            else:
                states.save(transitions.disenrolled(state, unloaded=True))
    _ask_daemon(paths, "reload")
    kept = tuple(name for name in ours if name not in unloaded)
    return Disabled(tuple(unloaded), kept, service_error, tuple(refused))


def _save_reconciled(rt: Runtime, states: StateFile, state: State) -> None:
    """Record which of our patches the kernel still holds (best effort: the
    de-enrolment itself is saved already)."""
    try:
        state = transitions.reconcile(state, rt.kernel.identity().key, rt.kernel.loaded())
    except (LivepatchError, OSError) as error:
        log.warning("cannot read which livepatches are still loaded: %s", error)
        return
    states.save(state)


def _disable_and_unload(rt: Runtime, name: str) -> UnloadRefused | None:
    """Take livepatch `name` out of the kernel; what went wrong, if anything."""
    for step, action in (("disable", rt.kernel.disable), ("unload", rt.kernel.unload)):
        try:
            action(name)
        except (LivepatchError, OSError) as error:
            log.info("the kernel refused to %s livepatch %s: %s", step, name, error)
            code = error.code if isinstance(error, LivepatchError) else type(error).__name__
            return UnloadRefused(name, step, code)
    return None


def _our_loaded_modules(rt: Runtime, state: State) -> list[str]:
    loaded = rt.kernel.loaded()
    names = [r.module_name for r in (state.applied, state.applying) if r is not None]
    return [name for name in dict.fromkeys(names) if name in loaded]


def refresh(rt: Runtime) -> tuple[dict[str, Any], LivepatchError | None]:
    """Check now: through the daemon when it runs, inline otherwise."""
    answer = _ask_daemon(rt.paths, "refresh")
    if answer is not None:
        error = answer.get("error")
        failure = None
        if isinstance(error, dict):
            failure = LivepatchError(str(error.get("message")), code=str(error.get("code")))
        return answer.get("status") or status(rt), failure
    outcome = CheckIn(rt).run()
    return status(rt), outcome.error


def readable_config(paths: Paths) -> settings.Config:
    """The settings: all of them for root, the public copy (secrets redacted) for others."""
    try:
        return settings.load(paths.config)
    except PermissionError:
        pass
    if paths.config.exists() and not paths.config_public.exists():
        raise SettingsNeedRoot()
    return settings.load_public(paths.config)


@dataclass(frozen=True)
class ShownConfig:
    text: str
    redacted: bool
    """Some value is shown as REDACTED because only root may read it."""


def show_config(paths: Paths) -> ShownConfig:
    config = readable_config(paths)
    hidden = any(settings.REDACTED in str(value) for value in settings.to_mapping(config).values())
    return ShownConfig(settings.render(config), hidden)


def set_config(paths: Paths, assignments: Sequence[str]) -> str:
    pairs = [settings.parse_assignment(item) for item in assignments]
    paths.ensure()
    with locked(paths.lock):
        try:
            current = settings.load(paths.config)
        except InvalidConfig:  # the way to repair it: start again from the defaults
            log.warning(
                "%s was unreadable; it now holds only the settings just given", paths.config
            )
            current = settings.Config()
        new = settings.assign(current, pairs)
        settings.save(paths.config, new)
        if new.ca_certs and settings.PEM_MARKER in new.ca_certs:
            write_atomic(paths.ca_bundle, new.ca_certs.encode(), mode=0o644)
    _ask_daemon(paths, "reload")
    return settings.render(new)
