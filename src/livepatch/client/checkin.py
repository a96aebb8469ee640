"""One check-in: reconcile, renew, refresh metadata, plan, verify, load, report.

Every step persists its outcome through a pure transition before the next
step starts, so a crash at any point leaves a record that ``reconcile`` can
square with the kernel. The intent to load is saved *before* finit_module:
after a crash the kernel tells whether it happened.

Locks: check-ins take turns on their own lock (``Paths.checkin_lock``), held
for the whole check-in. The state lock, which `enable`, `disable` and
`config` take too, is held only to read or change the state, and across the
kernel load (intent, finit_module, outcome), never across network I/O: a
slow or hostile service cannot lock the command line out. Each change is
applied to the state as it is on disk at that moment; when the enrolment the
check-in started with is gone (`disable`, or `disable` then `enable`) the
check-in stops and leaves the new state alone.

Update metadata gets the same care: python-tuf writes what it verified into
its directory as it goes (new roots, timestamp, snapshot, targets), and a
check-in of an enrolment that `disable` ended must not write the old
service's root into the new enrolment's directory. So a check-in works on a
staged copy (hard links: python-tuf replaces files, never rewrites them) and
moves what changed back into ``metadata`` at the end, under the state lock,
only if its enrolment is still the machine's.

Blocking: run it in a worker thread from the daemon.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from livepatch.client import health as health_rules
from livepatch.client import transitions
from livepatch.client.config import Config
from livepatch.client.config import load as load_config
from livepatch.client.errors import (
    ClientError,
    NotEnabled,
    ServiceError,
    TokenRevoked,
    UnsupportedKernel,
)
from livepatch.client.intent import Intent, IntentFile, from_earlier_boot
from livepatch.client.patches import PatchInfo
from livepatch.client.paths import Paths
from livepatch.client.planner import Apply, Remove, Revert, plan
from livepatch.client.ports import KernelPort, MetadataSource, ServiceClient
from livepatch.client.schedule import Timing
from livepatch.client.state import (
    Crash,
    Credential,
    CredentialFile,
    Enrolment,
    ErrorRecord,
    Health,
    HealthWatch,
    PatchRecord,
    Report,
    Revoked,
    State,
    StateFile,
)
from livepatch.client.store import fsync_dir, locked, write_atomic
from livepatch.errors import LivepatchError
from livepatch.rollout import Tier

log = logging.getLogger(__name__)

ServiceFactory = Callable[[Config], ServiceClient]
MetadataFactory = Callable[[Config, Paths, Credential], MetadataSource]


@dataclass(frozen=True)
class Runtime:
    """Everything a check-in touches, injected (tests pass fakes)."""

    paths: Paths
    kernel: KernelPort
    service: ServiceFactory
    metadata: MetadataFactory
    clock: Callable[[], datetime]
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True)
class Outcome:
    state: State
    error: LivepatchError | None = None
    applied: PatchInfo | None = None
    """The patch this check loaded, if any (for D-Bus signals)."""
    failed: PatchInfo | None = None


def effective_tier(state: State, config: Config) -> Tier:
    name = config.tier or (state.enrolment.tier if state.enrolment else "")
    try:
        return Tier(name)
    except ValueError:
        return Tier.COMMUNITY


def error_record(error: LivepatchError) -> ErrorRecord:
    return ErrorRecord(error.code, " ".join(str(error).split()))


def retryable(error: LivepatchError) -> bool:
    """Whether `error` is network or server trouble, worth retrying with backoff."""
    return isinstance(error, ClientError) and error.retryable


RETRYABLE_STATUSES = frozenset({401, 408, 409, 429})
"""4xx answers that say nothing against the report itself: a credential to renew or
re-enrol (401), a timeout (408), a concurrent write to the same record (409, "try
again"), a busy service (429)."""


def refused_for_good(error: LivepatchError) -> bool:
    """Whether the service refused a report so that sending it again can never succeed:
    403 (``not-admitted``, ``wrong-kernel``, ``duplicate-machine``, ``token-revoked``) and
    any other 4xx but those in RETRYABLE_STATUSES. Network trouble, 5xx and 429 are not."""
    if isinstance(error, TokenRevoked):
        return True
    status = error.status if isinstance(error, ServiceError) else None
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_STATUSES


class _Superseded(Exception):
    """The enrolment changed while the check-in talked to the service."""


class CheckIn:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.states = StateFile(runtime.paths.state)
        self.credentials = CredentialFile(runtime.paths.credential)
        self.intents = IntentFile(runtime.paths.intent)
        self._staging: Path | None = None

    def _save(self, state: State) -> State:
        self.states.save(state)
        return state

    def _update(self, enrolment: Enrolment, change: Callable[[State], State]) -> State:
        """Apply `change` to the saved state, under the state lock; the new state.

        Raises _Superseded when the state no longer holds `enrolment`.
        """
        with locked(self.rt.paths.lock):
            current = self._current(enrolment)
            new = change(current)
            return self._save(new) if new != current else current

    def _current(self, enrolment: Enrolment) -> State:
        """The saved state (the caller holds the state lock), if it still holds `enrolment`."""
        current = self.states.load()
        if current.enrolment != enrolment:
            raise _Superseded()
        return current

    def reconcile(self) -> State:
        """Align the record with the kernel (daemon start-up); returns the saved state."""
        with locked(self.rt.paths.lock):
            return self._reconciled(self.states.load())

    def _reconciled(self, state: State) -> State:
        kernel = self.rt.kernel
        new = transitions.reconcile(state, kernel.identity().key, kernel.loaded())
        new = self._crash_checked(new)
        return self._save(new) if new != state else state

    def _crash_checked(self, state: State) -> State:
        """Turn an apply intent from an earlier boot into a recorded, reported crash.

        The state is saved before the intent is removed, so a crash in between
        finds the intent again and records the same crash again (idempotent).
        An intent of this boot that nothing is applying or watching any more
        (the daemon stopped between writing it and loading) is stale: removed.
        """
        intent = self.intents.load()
        if intent is None:
            return state
        if from_earlier_boot(intent, self.rt.kernel.boot_id()):
            crash = Crash(
                intent.patch_id, intent.version, intent.module_name, intent.boot_id, intent.at
            )
            log.error(
                "the machine crashed or was reset while patch %s was new; it will not be "
                "loaded again (livepatch clear-crash allows it)",
                intent.patch_id,
            )
            state = self._save(transitions.crashed(state, crash, intent.kernel))
            self.intents.clear()
        elif state.watch is None and state.applying is None:
            self.intents.clear()
        return state

    def run(self) -> Outcome:
        """Check in once; errors are recorded in the state and returned, not raised,
        except NotEnabled (also when the machine is disabled meanwhile)."""
        with locked(self.rt.paths.checkin_lock):
            self._discard_staged_metadata()  # left by a check-in that was killed
            try:
                outcome = self._run()
                if self._staging is not None and outcome.state.enrolment is not None:
                    with locked(self.rt.paths.lock):
                        self._current(outcome.state.enrolment)
                        self._publish_metadata(self._staging)
                return outcome
            except _Superseded:
                state = self.states.load()
                if state.enrolment is None:
                    raise NotEnabled() from None
                log.info("the machine was enrolled again during the check-in; result dropped")
                return Outcome(state)
            finally:
                self._discard_staged_metadata()

    def _run(self) -> Outcome:
        with locked(self.rt.paths.lock):
            state = self._reconciled(self.states.load())
            enrolment = state.enrolment
            if enrolment is None:
                raise NotEnabled()
            now = self.rt.clock()
            key = self.rt.kernel.identity().key
            reason = self.rt.kernel.unsupported_reason()
            if reason is not None:
                release = self.rt.kernel.identity().release
                error = UnsupportedKernel(release, reason)
                return Outcome(
                    self._save(transitions.unsupported(state, key, error_record(error), now)), error
                )
            credential = self.credentials.load()
            if credential is None:
                raise NotEnabled()
            self._staging = self._stage_metadata()
        paths = replace(self.rt.paths, metadata_dir=self._staging)
        try:
            config = load_config(self.rt.paths.config)
            with locked(self.rt.paths.lock):
                state = self._judge_due(self._current(enrolment), key, now)
            credential = self._fresh_credential(enrolment, credential, config, now)
            service = self.rt.service(config)
            state = self._flush_reports(state, enrolment, service, credential, key)
            enrolment, state = self._kernel_on_record(state, enrolment, service, credential, key)
            source = self.rt.metadata(config, paths, credential)
            source.refresh()
            patches = source.patches()
            # A patch still in transition is not applied yet (it may never be).
            loaded = {
                name
                for name, status in self.rt.kernel.loaded().items()
                if status.enabled and not status.transition
            }
            decision = plan(
                patches,
                kernel_key=key,
                machine_id=enrolment.machine_id,
                tier=effective_tier(state, config),
                loaded_modules=loaded,
                blocked={state.crashed.patch_id} if state.crashed else (),
            )
        except LivepatchError as error:
            log.warning("check-in failed: %s", error)
            record = error_record(error)
            failed = self._update(
                enrolment,
                lambda s: transitions.check_failed(s, record, now, retryable=retryable(error)),
            )
            return Outcome(failed, error)
        state = self._update(enrolment, lambda s: transitions.planned(s, decision, key, now))
        window = config.health_window
        if isinstance(decision, Revert | Remove):
            outcome = self._leave_revoked(enrolment, decision, source, key, now, window)
        elif isinstance(decision, Apply):
            target = _finish_first(state, decision.patch, patches)
            outcome = self._apply(enrolment, target, source, key, now, window)
        else:
            return Outcome(state)
        state = self._flush_reports(outcome.state, enrolment, service, credential, key)
        return replace(outcome, state=state)

    def _stage_metadata(self) -> Path:
        """A copy of the trusted metadata for this check-in (the caller holds the state lock)."""
        staging = self.rt.paths.root / f"{STAGING_PREFIX}{os.getpid()}.{os.urandom(4).hex()}"
        try:
            shutil.copytree(self.rt.paths.metadata, staging, symlinks=True, copy_function=os.link)
        except FileNotFoundError:  # nothing pinned: the metadata source says so
            staging.mkdir(mode=0o700, exist_ok=True)
        return staging

    def _publish_metadata(self, staging: Path) -> None:
        """Move what the check-in changed into the live metadata (under the state lock).

        Each file moves atomically, older roots first and the root.json link
        after them; every file was verified before python-tuf wrote it.
        """
        live = self.rt.paths.metadata
        moved = False
        for source in sorted(staging.rglob("*"), key=_publish_order):
            if source.is_dir() and not source.is_symlink():
                continue
            target = live / source.relative_to(staging)
            if _same_file(source, target):
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.replace(source, target)
            moved = True
        if moved:
            for directory in {live, *(p.parent for p in live.rglob("*.json"))}:
                fsync_dir(directory)

    def _discard_staged_metadata(self) -> None:
        self._staging = None
        for leftover in self.rt.paths.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def _fresh_credential(
        self, enrolment: Enrolment, credential: Credential, config: Config, now: datetime
    ) -> Credential:
        issued = credential.issued or credential.expires - timedelta(days=30)
        left = credential.expires - now
        if left > max((credential.expires - issued) * self.rt.timing.renew_before, timedelta(0)):
            return credential
        renewed = self.rt.service(config).renew(enrolment.machine_id, credential)
        renewed = replace(renewed, issued=renewed.issued or now)
        with locked(self.rt.paths.lock):
            self._current(enrolment)
            self.credentials.save(renewed)
        log.info("credential renewed; it expires %s", renewed.expires.isoformat())
        return renewed

    def _flush_reports(
        self,
        state: State,
        enrolment: Enrolment,
        service: ServiceClient,
        credential: Credential,
        key: str,
    ) -> State:
        """Send queued reports in order; drop those refused for good, stop at the first
        other failure and keep the rest, in order.

        A report the service will never take (``refused_for_good``) must not block
        the ones behind it: it is logged once, with the service's code, and dropped.
        A report on the running kernel `key` waits while the service has another
        kernel on record for the machine (``_kernel_on_record`` tells it first).
        Only check-ins queue reports and they take turns, so the first `done`
        reports on disk are the ones sent or dropped.
        """
        done = 0
        for report in state.pending_reports:
            if report.kernel == key != enrolment.kernel:
                break
            try:
                service.report(enrolment.machine_id, credential, report)
            except LivepatchError as error:
                if not refused_for_good(error):
                    log.warning("could not send a report yet: %s", error)
                    break
                log.warning(
                    "the service refused the %s report on patch %s for good (%s); dropped: %s",
                    report.result,
                    report.patch_id,
                    error.code,
                    error,
                )
            done += 1
        if not done:
            return state
        return self._update(enrolment, lambda s: transitions.reports_sent(s, done))

    def _kernel_on_record(
        self,
        state: State,
        enrolment: Enrolment,
        service: ServiceClient,
        credential: Credential,
        key: str,
    ) -> tuple[Enrolment, State]:
        """Tell the service the machine runs kernel `key` when it has another on record
        (the machine booted a new kernel since it enrolled); the enrolment and state then.

        Reports count only for the kernel on record, so the service is told before
        the first report on `key` is sent, and only once the reports on the earlier
        kernel ahead of it are delivered (or dropped): they still count for it. The
        machine proves itself with its credential and keeps its record. A service
        without this request (404, 405) is not asked again: reports go on as before.
        """
        pending = state.pending_reports
        if enrolment.kernel == key or (pending and pending[0].kernel != key):
            return enrolment, state
        architecture = self.rt.kernel.identity().architecture
        try:
            service.boot_kernel(enrolment.machine_id, credential, key, architecture)
        except ServiceError as error:
            if error.status not in (404, 405):
                raise
            log.warning(
                "the patch service cannot record that this machine runs kernel %s (%s): "
                "enable the machine again for its reports to count",
                key,
                error.code,
            )
        else:
            log.info("told the patch service that this machine runs kernel %s now", key)
        updated = replace(enrolment, kernel=key)
        with locked(self.rt.paths.lock):
            state = self._save(replace(self._current(enrolment), enrolment=updated))
        return updated, self._flush_reports(state, updated, service, credential, key)

    def _judge_due(self, state: State, key: str, now: datetime) -> State:
        """Judge the watched patch once its health window has passed; queue the verdict.

        The caller holds the state lock (the verdict reads the kernel, not the network).
        """
        watch = state.watch
        if watch is None or now < watch.until:
            return state
        kernel = self.rt.kernel
        status = kernel.loaded().get(watch.module_name)
        taint = self._taint()
        verdict = health_rules.judge(
            module=watch.module_name,
            functions=watch.functions,
            taint_before=watch.taint,
            taint_after=taint,
            log=kernel.log_since(watch.log_seq),
            enabled=status is not None and status.enabled,
        )
        if verdict.healthy:
            log.info("patch %s is healthy after its window", watch.patch_id)
        else:
            log.error("patch %s is unhealthy: %s", watch.patch_id, verdict.evidence)
        report = Report(
            watch.patch_id,
            key,
            "applied",
            taint=taint,
            health=verdict.name,
            evidence=verdict.evidence or None,
        )
        health = Health(watch.patch_id, verdict.name, verdict.evidence)
        state = self._save(transitions.judged(state, health, report))
        self.intents.clear()
        return state

    def _leave_revoked(
        self,
        enrolment: Enrolment,
        decision: Revert | Remove,
        source: MetadataSource,
        key: str,
        now: datetime,
        window: int,
    ) -> Outcome:
        """Go back from a revoked patch: replace it by `decision.patch`, or remove it."""
        revoked = decision.revoked
        reason = revoked.revoked.reason if revoked.revoked else ""
        replaced = None
        if isinstance(decision, Revert):
            outcome = self._apply(enrolment, decision.patch, source, key, now, window)
            if outcome.error is not None:
                return outcome
            replaced = outcome.state.applied
        else:
            with locked(self.rt.paths.lock):
                state = self._current(enrolment)
                try:
                    self.rt.kernel.disable(revoked.module_name)
                    self.rt.kernel.unload(revoked.module_name)
                except LivepatchError as error:
                    log.error("could not remove revoked patch %s: %s", revoked.patch_id, error)
                    return Outcome(
                        self._save(transitions.leaving_failed(state, error_record(error))), error
                    )
        log.warning("left revoked patch %s (%s)", revoked.patch_id, reason)
        record = Revoked(
            revoked.patch_id, revoked.version, reason, replaced.patch_id if replaced else ""
        )
        report = Report(
            revoked.patch_id,
            key,
            "reverted",
            reason=f"revoked: {reason}"[:500],
            taint=self._taint(),
        )
        with locked(self.rt.paths.lock):
            state = self._current(enrolment)
            state = self._save(transitions.reverted(state, record, report, replaced=replaced))
            if state.watch is None:
                self.intents.clear()
        return Outcome(state)

    def _apply(
        self,
        enrolment: Enrolment,
        patch: PatchInfo,
        source: MetadataSource,
        key: str,
        now: datetime,
        window: int,
    ) -> Outcome:
        record = transitions.record(patch, key)
        try:
            self.rt.kernel.check_loadable()
            data = source.download(patch)
            source.verify(patch, data, now)
            self.rt.kernel.check_module(data)
        except LivepatchError as error:
            log.warning("patch %s not applied: %s", patch.patch_id, error)
            report = Report(patch.patch_id, key, "failed", None, _reason(error), 0, self._taint())
            failure = error_record(error)
            failed = self._update(enrolment, lambda s: transitions.apply_failed(s, failure, report))
            return Outcome(failed, error, failed=patch)
        with locked(self.rt.paths.lock):
            state = self._current(enrolment)
            return self._load(state, record, patch, data, key, now, window)

    def _load(
        self,
        state: State,
        record: PatchRecord,
        patch: PatchInfo,
        data: bytes,
        key: str,
        now: datetime,
        window: int,
    ) -> Outcome:
        """Hand the verified module to the kernel (the caller holds the state lock)."""
        module = self._stage_module(patch, data)
        earlier = state.applying
        kernel = self.rt.kernel
        taint_before, log_seq = self._taint(), kernel.log_seq()
        self.intents.save(
            Intent(patch.patch_id, patch.version, patch.module_name, key, kernel.boot_id(), now)
        )
        state = self._save(transitions.applying(state, record))
        started = time.monotonic()
        try:
            kernel.load(module)
        except LivepatchError as error:
            self.intents.clear()
            log.warning("the kernel did not apply %s: %s", patch.patch_id, error)
            report = Report(
                patch.patch_id,
                key,
                "failed",
                getattr(error, "errno", None),
                _reason(error),
                _ms(started),
                self._taint(),
            )
            # A stalled transition leaves the patch in the kernel, still applying.
            stalled = record if error.code == "transition-stalled" else earlier
            failed = transitions.apply_failed(
                state, error_record(error), report, still_applying=stalled
            )
            failed = transitions.reconcile(failed, key, self.rt.kernel.loaded())
            return Outcome(self._save(failed), error, failed=patch)
        report = Report(patch.patch_id, key, "applied", None, None, _ms(started), self._taint())
        watch = HealthWatch(
            patch.patch_id,
            patch.module_name,
            until=self.rt.clock() + timedelta(seconds=window),
            taint=taint_before,
            log_seq=log_seq,
            functions=kernel.functions(patch.module_name),
        )
        state = transitions.apply_succeeded(state, record, report)
        state = self._save(transitions.watching(state, watch))
        log.info("applied %s (%s)", patch.patch_id, ", ".join(c.id for c in patch.cves))
        self._prune_modules(keep=module)
        return Outcome(state, applied=patch)

    def _stage_module(self, patch: PatchInfo, data: bytes) -> Path:
        self.rt.paths.modules.mkdir(mode=0o700, parents=True, exist_ok=True)
        module = self.rt.paths.modules / f"{patch.module_name}.ko"
        write_atomic(module, data, mode=0o600)
        return module

    def _prune_modules(self, keep: Path) -> None:
        for stale in self.rt.paths.modules.glob("*.ko"):
            if stale != keep:
                stale.unlink(missing_ok=True)

    def _taint(self) -> int:
        try:
            return self.rt.kernel.taint()
        except (LivepatchError, OSError):
            return 0


STAGING_PREFIX = ".metadata.checkin."


def _publish_order(path: Path) -> tuple[int, str]:
    """Root history first, then the root.json link, then the rest."""
    if "root_history" in path.parts:
        return 0, str(path)
    return (1 if path.name == "root.json" else 2), str(path)


def _same_file(source: Path, target: Path) -> bool:
    """Whether `target` is what `source` is (a hard link, or a link to the same root)."""
    if source.is_symlink() or target.is_symlink():
        return (
            source.is_symlink()
            and target.is_symlink()
            and os.readlink(source) == os.readlink(target)
        )
    try:
        return os.path.samefile(source, target)
    except FileNotFoundError:
        return False


def _finish_first(state: State, wanted: PatchInfo, patches: Sequence[PatchInfo]) -> PatchInfo:
    """The patch to load now: one still in transition from an earlier check comes first.

    The kernel runs one transition at a time; loading `wanted` while another
    patch is in transition would be refused, so wait for that one instead
    (loading it again waits for its transition) and move on next check.
    """
    pending = state.applying
    if pending is None or pending.module_name == wanted.module_name:
        return wanted
    return next((p for p in patches if p.patch_id == pending.patch_id), wanted)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _reason(error: LivepatchError) -> str:
    record = error_record(error)
    return f"{record.code}: {record.message}"[:500]
