"""The snap's hooks: ``python -m livepatch.snap.hooks HOOK`` (see hooks/ in the repo).

- install: lay out $SNAP_DATA (the client's state directory) and $SNAP_COMMON,
  write the default settings.
- configure: validate ``snap set livepatch KEY=VALUE`` with the client's own
  rules; a bad value fails the hook (so ``snap set`` fails and snapd keeps the
  old configuration) and nothing is written; good values are saved and the
  daemon is told to reload.
- pre-refresh: refuse while a livepatch transition or a check-in is under way.
- post-refresh: the new revision's self-test (``selftest``); failing it fails
  the refresh and snapd brings the previous revision back.
- check-health: ``snapctl set-health`` from the daemon's status.
- remove: de-enrol; patches already loaded stay in the kernel until reboot,
  and the log says so.

Each hook prints what it did on stderr (snapd shows it with ``snap change``
and in its errors), sends it to syslog when there is one, and appends one line
to $SNAP_COMMON/hooks.log, which survives the revert of a failed refresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from livepatch.client import commands, control
from livepatch.client import config as settings
from livepatch.client.checkin import Runtime
from livepatch.client.errors import DaemonUnavailable, InvalidConfig
from livepatch.client.paths import Paths
from livepatch.client.ports import KernelPort
from livepatch.client.state import StateFile
from livepatch.client.store import is_locked, write_atomic
from livepatch.errors import LivepatchError
from livepatch.snap import plughooks, selftest
from livepatch.snap.environment import SnapEnvironment
from livepatch.snap.health import assess
from livepatch.snap.snapctl import Health, Snapctl

log = logging.getLogger("livepatch.snap")

MANAGED = "snap-config.json"
"""In $SNAP_DATA: the keys last applied from ``snap set`` (so ``snap unset`` resets them)."""
JOURNAL_LINES = 500
HEALTH_WAIT = 8.0
"""check-health runs right after the services start: how long to wait for the daemon.
snapd kills the hook after 30 s (and then fails the install), and on a slow machine the
interpreter's start-up takes part of that. A daemon that comes up later reports its
health itself (livepatch.snap.health.HealthReporter)."""


class HookFailed(LivepatchError):
    code = "hook-failed"


class RefreshRefused(HookFailed):
    code = "refresh-refused"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Refusing to refresh while {reason}; snapd tries the refresh again later."
        )


class SelfTestFailed(HookFailed):
    code = "self-test-failed"

    def __init__(self, failed: Sequence[selftest.Check]) -> None:
        what = "; ".join(f"{check.name}: {check.detail}" for check in failed)
        super().__init__(
            f"The new revision failed its self-test ({what}); snapd goes back to the "
            "previous revision."
        )


# -- install ---------------------------------------------------------------------


def install(env: SnapEnvironment, snapctl: Snapctl) -> str:
    paths = env.paths
    paths.ensure()
    env.common.mkdir(mode=0o755, parents=True, exist_ok=True)
    if not paths.config.exists():
        settings.save(paths.config, settings.Config())
    if "check-interval" not in snapctl.get(["check-interval"]):
        snapctl.set({"check-interval": settings.DEFAULT_CHECK_INTERVAL})
    return f"created {paths.root} and {env.common}, default settings written"


# -- configure -------------------------------------------------------------------


def snap_value(key: str, value: Any) -> str:
    """A ``snap set`` value (snapd stores JSON values) as the text the client validates.

    Strings stay as they are and whole numbers become their digits (``snap set
    livepatch check-interval=30`` stores a number); every setting is one value,
    so true/false, fractions, lists and objects are refused here, naming the key.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidConfig(
        f"{key} takes a single text value or whole number, got {json.dumps(value)}; "
        f"set it with: snap set livepatch {key}=VALUE"
    )


def _managed(paths: Paths) -> set[str]:
    try:
        data = json.loads((paths.root / MANAGED).read_text())
    except (OSError, ValueError):
        return set()
    return {str(key) for key in data} if isinstance(data, list) else set()


def configure(env: SnapEnvironment, snapctl: Snapctl) -> dict[str, str]:
    """Apply the snap configuration; returns the assignments made (key → text, '' = reset).

    Keys set with ``snap set`` are applied; keys that were applied before and
    are now unset go back to their defaults; keys never set through snapd keep
    whatever ``livepatch config`` gave them. All values are validated before
    anything is written.
    """
    paths = env.paths
    document = snapctl.get(settings.KEYS)
    previous = _managed(paths)
    pairs = {key: snap_value(key, document[key]) for key in settings.KEYS if key in document}
    for key in previous:
        if key in settings.KEYS and key not in document:
            pairs[key] = ""
    if not pairs:
        return {}
    try:
        commands.set_config(paths, [f"{key}={value}" for key, value in pairs.items()])
    except DaemonUnavailable as error:
        log.warning(
            "The settings are saved, but the daemon did not take them now (%s); it reads "
            "them again at its next check-in.",
            error,
        )
    managed = sorted(key for key in pairs if key in document)  # names only, never values
    write_atomic(paths.root / MANAGED, json.dumps(managed).encode() + b"\n", mode=0o644)
    return pairs


# -- pre-refresh -----------------------------------------------------------------


def transition_in_progress(paths: Paths, kernel: KernelPort) -> str | None:
    """Why a refresh must wait now, or None.

    A refresh stops the daemon; stopping it while the kernel switches tasks to
    a patch, or between handing a module to the kernel and recording the
    outcome, would leave the record to be squared later. Not knowing (the
    kernel files are not readable) is no reason to hold a refresh back: the
    new revision may be the fix.
    """
    try:
        loaded = kernel.loaded()
    except LivepatchError as error:
        log.warning("Cannot tell whether a transition is in progress (%s); not holding.", error)
        return None
    moving = sorted(name for name, status in loaded.items() if status.transition)
    if moving:
        return f"the kernel is still switching tasks to livepatch {', '.join(moving)}"
    # A record of a patch handed to the kernel stays (after reconciling) only while
    # its module is still in transition, which the check above already caught.
    if is_locked(paths.lock):
        return "a check-in, which may load a patch, is in progress"
    return None


def pre_refresh(env: SnapEnvironment, kernel: KernelPort) -> str:
    reason = transition_in_progress(env.paths, kernel)
    if reason is not None:
        raise RefreshRefused(reason)
    return "no transition in progress; the refresh may go ahead"


# -- post-refresh ----------------------------------------------------------------


def post_refresh(
    env: SnapEnvironment,
    environ: Mapping[str, str],
    run_selftest: Callable[[Path, Paths, Mapping[str, str]], list[selftest.Check]] = (selftest.run),
) -> str:
    checks = run_selftest(env.snap, env.paths, environ)
    for check in checks:
        log.info("self-test %s: %s (%s)", check.name, "ok" if check.ok else "FAILED", check.detail)
    failed = [check for check in checks if not check.ok]
    if failed:
        raise SelfTestFailed(failed)
    return f"revision {env.revision or '?'} passed its self-test ({len(checks)} checks)"


# -- check-health ----------------------------------------------------------------


Ask = Callable[..., dict[str, Any]]


@dataclass
class DaemonQuery:
    """Ask the daemon for its status, waiting a while for it to come up."""

    ask: Ask = control.request
    wait: float = HEALTH_WAIT
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def status(self, paths: Paths) -> dict[str, Any] | None:
        deadline = self.clock() + self.wait
        while True:
            try:
                # reload first: the verdict is about now (a plug may have gone since the
                # daemon last looked), not about the daemon's last check-in
                self.ask(paths.control, "reload", timeout=5.0)
                answer = self.ask(paths.control, "status", timeout=5.0)
            except control.DaemonNotRunning:
                if self.clock() >= deadline:
                    return None
                self.sleep(0.5)
                continue
            except DaemonUnavailable as error:
                log.warning("The daemon did not answer: %s", error)
                return None
            status = answer.get("status")
            return status if answer.get("ok") and isinstance(status, dict) else None


def check_health(env: SnapEnvironment, snapctl: Snapctl, query: DaemonQuery) -> Health:
    health = assess(query.status(env.paths))
    snapctl.set_health(health)
    return health


# -- remove ----------------------------------------------------------------------


def remove(runtime: Runtime) -> list[str]:
    """De-enrol, and say what stays in the kernel; never fails (the snap goes anyway)."""
    lines: list[str] = []
    try:
        state = StateFile(runtime.paths.state).load()
    except LivepatchError as error:
        state = None
        lines.append(f"The state record could not be read ({error}).")
    if state is not None and state.enrolment is None:
        lines.append("This machine was not enabled, so there is nothing to de-enrol.")
    elif state is not None and state.enrolment is not None:
        enrolment = state.enrolment
        try:
            result = commands.disable(runtime, unload=False)
        except LivepatchError as error:
            lines.append(f"De-enrolling machine {enrolment.machine_id} did not finish: {error}")
        else:
            lines.append(f"De-enrolled machine {enrolment.machine_id} from {enrolment.server}.")
            if result.service_error is not None:
                lines.append(
                    f"The patch service was not told ({result.service_error}); its "
                    "administrator may need to free this machine's slot."
                )
    try:
        loaded = sorted(name for name, status in runtime.kernel.loaded().items() if status.enabled)
    except LivepatchError as error:
        lines.append(
            "Livepatch modules already loaded stay in the kernel until the next reboot "
            f"(which ones could not be read: {error})."
        )
    else:
        if loaded:
            lines.append(
                "Loaded livepatch modules stay in the kernel until the next reboot: "
                f"{', '.join(loaded)}."
            )
        else:
            lines.append("No livepatch module is loaded in the kernel.")
    return lines


# -- running a hook --------------------------------------------------------------


@dataclass
class Dependencies:
    """What the hooks reach outside Python; tests replace them."""

    snapctl: Snapctl = field(default_factory=Snapctl)
    kernel: Callable[[], KernelPort] | None = None
    runtime: Callable[[SnapEnvironment], Runtime] | None = None
    query: DaemonQuery = field(default_factory=DaemonQuery)
    selftest: Callable[[Path, Paths, Mapping[str, str]], list[selftest.Check]] = selftest.run

    def kernel_port(self) -> KernelPort:
        if self.kernel is not None:
            return self.kernel()
        from livepatch.client.kernelport import KernelAdapter

        return KernelAdapter(Path("/"))

    def runtime_for(self, env: SnapEnvironment) -> Runtime:
        if self.runtime is not None:
            return self.runtime(env)
        from livepatch.client.wiring import default_runtime

        return default_runtime({"SNAP_DATA": str(env.data)})


HOOKS = (
    "install",
    "configure",
    "pre-refresh",
    "post-refresh",
    "check-health",
    "remove",
    *plughooks.HOOKS,
)


def run_hook(
    name: str, env: SnapEnvironment, deps: Dependencies, environ: Mapping[str, str]
) -> str:
    """Run hook `name`; returns a one-line summary, raises LivepatchError on failure."""
    if name == "install":
        return install(env, deps.snapctl)
    if name == "configure":
        pairs = configure(env, deps.snapctl)
        if not pairs:
            return "no settings from snapd"
        # Key names only: values may hold proxy passwords.
        applied = sorted(key for key, value in pairs.items() if value)
        reset = sorted(key for key, value in pairs.items() if not value)
        return "; ".join(
            part
            for part in (
                f"applied {', '.join(applied)}" if applied else "",
                f"reset {', '.join(reset)} to the defaults" if reset else "",
            )
            if part
        )
    if name == "pre-refresh":
        return pre_refresh(env, deps.kernel_port())
    if name == "post-refresh":
        return post_refresh(env, environ, deps.selftest)
    if name == "check-health":
        health = check_health(env, deps.snapctl, deps.query)
        return f"health {health.status}" + (f": {health.message}" if health.message else "")
    if name in plughooks.HOOKS:
        return plughooks.run(name, env.snap, env.paths)
    if name == "remove":
        with contextlib.suppress(OSError):  # snapd's disconnect hook may have done it
            log.info("%s", plughooks.remove_motd())
        lines = remove(deps.runtime_for(env))
        for line in lines[:-1]:
            log.info("%s", line)
        return lines[-1]
    raise HookFailed(f"Unknown hook {name!r}; the hooks are {', '.join(HOOKS)}.")


def _journal(env: SnapEnvironment, name: str, outcome: str, text: str) -> None:
    """Append one line to $SNAP_COMMON/hooks.log, keeping the last JOURNAL_LINES."""
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{when} revision={env.revision or '?'} {name} {outcome}: {' '.join(text.split())}\n"
    try:
        env.common.mkdir(parents=True, exist_ok=True)
        try:
            old = env.journal.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            old = []
        kept = "".join([*old[-(JOURNAL_LINES - 1) :], line])
        write_atomic(env.journal, kept.encode(), mode=0o644)
    except OSError as error:
        log.warning("Cannot write %s: %s", env.journal, error)


class _HookHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, where snapd collects a hook's output."""


def _configure_logging(name: str) -> None:
    root = logging.getLogger("livepatch")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if isinstance(handler, (_HookHandler, logging.handlers.SysLogHandler)):
            root.removeHandler(handler)
            handler.close()
    stderr = _HookHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(f"livepatch {name}: %(message)s"))
    root.addHandler(stderr)
    if Path("/dev/log").exists():
        with contextlib.suppress(OSError):
            syslog = logging.handlers.SysLogHandler(address="/dev/log")
            syslog.setFormatter(logging.Formatter(f"livepatch.{name}: %(message)s"))
            root.addHandler(syslog)


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    deps: Dependencies | None = None,
) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in HOOKS:
        print(f"usage: python -m livepatch.snap.hooks {{{','.join(HOOKS)}}}", file=sys.stderr)
        return 2
    name = args[0]
    _configure_logging(name)
    try:
        env = SnapEnvironment.from_environ(environ)
    except LivepatchError as error:
        print(f"livepatch {name}: {error}", file=sys.stderr)
        return 1
    try:
        summary = run_hook(name, env, deps or Dependencies(), environ)
    except LivepatchError as error:
        print(f"livepatch {name}: {error}", file=sys.stderr)
        _journal(env, name, "failed", str(error))
        return 1
    except Exception as error:  # a bug: say so, fail the hook, keep the traceback
        log.exception("unexpected error")
        _journal(env, name, "failed", f"unexpected {type(error).__name__}: {error}")
        return 70
    log.info("%s", summary)
    _journal(env, name, "ok", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
