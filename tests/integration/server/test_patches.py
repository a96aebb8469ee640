"""The catalogue keeps the database and the signed metadata in step, on SQLite and PostgreSQL.

Failures are injected where a change can break: the database commit, and
signing (before and after its commit point, the replacement of
timestamp.json). Afterwards the database and the metadata as served (read
from the blob store, the way machines get it) must agree: a patch, or a
rollout state, is in both or in neither.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from livepatch.rollout import Stage
from livepatch.server import patches
from livepatch.server.api import ops
from livepatch.server.errors import Conflict, InvalidRequest, ServerError
from livepatch.server.service import Busy, Service
from livepatch.server.storage.models import Patch, RolloutEvent
from livepatch.trust import files, modsig, patchmeta, repository
from livepatch.trust.errors import ModuleSignatureError
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.patchmeta import from_signed
from tests.integration.server.conftest import MODULE, Clock, module_named

KERNEL = "6.1.0-56-amd64"
FIRST = f"lp-{KERNEL}-1"
TARGET = f"patches/{FIRST}.ko"


def publication(module: bytes = MODULE, **overrides: float) -> patches.Publication:
    return patches.Publication(
        module=module,
        kernels=[KERNEL],
        cves=["CVE-2024-1086"],
        severity=patches.Severity.HIGH,
        description="nf_tables use-after-free",
        overrides=overrides,
    )


NO_EVIDENCE = {"minimum_applied": 0.0}
"""For tests of the engine's promotions themselves: no machine reports there."""


def served_targets(service: Service) -> dict[str, Any]:
    """The signed targets as a machine would get them: timestamp, snapshot, targets."""
    store = service.store
    timestamp = json.loads(store.get("metadata/timestamp.json"))
    snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads(store.get(f"metadata/{snapshot_version}.snapshot.json"))
    version = snapshot["signed"]["meta"]["targets.json"]["version"]
    targets: dict[str, Any] = json.loads(store.get(f"metadata/{version}.targets.json"))
    signed: dict[str, Any] = targets["signed"]["targets"]
    return signed


def served_rollout(service: Service, target: str = TARGET) -> dict[str, Any] | None:
    """The signed rollout fields of `target` as served, None if it is not served."""
    entry = served_targets(service).get(target)
    if entry is None:
        return None
    rollout: dict[str, Any] = from_signed(entry["custom"]["livepatch"])["rollout"]
    return rollout


def served_blob(service: Service, target: str = TARGET) -> bytes:
    entry = served_targets(service)[target]
    directory, _, name = target.rpartition("/")
    return service.store.get(f"targets/{directory}/{entry['hashes']['sha256']}.{name}")


def stored(service: Service) -> dict[str, tuple[str, bool, bool]]:
    """patch_id: (stage, halted, withdrawn) as the database has them."""
    with service.transaction(readonly=True) as session:
        rows = session.execute(select(Patch.patch_id, Patch.stage, Patch.halted, Patch.withdrawn))
        return {p: (stage, halted, withdrawn) for p, stage, halted, withdrawn in rows}


def events(service: Service) -> list[tuple[str, str, str, str]]:
    with service.transaction(readonly=True) as session:
        rows = session.execute(
            select(
                RolloutEvent.patch_id, RolloutEvent.action, RolloutEvent.stage, RolloutEvent.trigger
            ).order_by(RolloutEvent.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
def failing_commit(service: Service) -> Iterator[Callable[..., None]]:
    """Arm to make a database commit fail (as a lost connection or a full disk would).

    ``arm()`` fails the next commit, ``arm(skip=1)`` the one after.
    """
    countdown: list[int] = []

    def before_commit(_session: Session) -> None:
        if countdown:
            countdown[0] -= 1
            if countdown[0] < 0:
                countdown.clear()
                raise OperationalError("COMMIT", {}, Exception("injected commit failure"))

    def arm(skip: int = 0) -> None:
        countdown[:] = [skip]

    event.listen(service.database.sessions, "before_commit", before_commit)
    try:
        yield arm
    finally:
        event.remove(service.database.sessions, "before_commit", before_commit)


@pytest.fixture
def failing_signing(service: Service, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Arm to make the next publish fail writing timestamp.json (before its commit point)."""
    service.root()  # the repository exists (its first timestamp written) before any failure
    armed: list[bool] = []
    real = files.write_atomic

    def write_atomic(path: Path, data: bytes, **kwargs: Any) -> None:
        if armed and path.name == "timestamp.json":
            armed.clear()
            raise OSError(28, "No space left on device (injected)")
        real(path, data, **kwargs)

    monkeypatch.setattr(repository, "write_atomic", write_atomic)
    return lambda: armed.append(True)


def test_a_failed_commit_publishes_nothing(
    service: Service, failing_commit: Callable[..., None]
) -> None:
    failing_commit()
    with pytest.raises(Busy):
        patches.publish(service, publication())
    assert stored(service) == {}
    assert not [name for name in served_targets(service) if name.startswith("patches/")]
    # Nothing half-done lingers: the next publish is the first patch, served.
    info = patches.publish(service, publication())
    assert info.patch_id == FIRST
    assert stored(service) == {FIRST: ("canary", False, False)}
    assert served_rollout(service) == {"stage": "canary", "percentage": 5.0, "halted": False}


@pytest.mark.parametrize(
    ("change", "events_after"),
    [
        (lambda s: patches.promote(s, FIRST), [(FIRST, "promotion", "moderate", "manual")]),
        (lambda s: patches.halt(s, FIRST), [(FIRST, "halt", "canary", "manual")]),
        (lambda s: patches.withdraw(s, FIRST), []),
        (lambda s: patches.revoke(s, FIRST, "oops"), [(FIRST, "revocation", "canary", "manual")]),
    ],
    ids=["promote", "halt", "withdraw", "revoke"],
)
def test_failed_commits_of_changes_publish_nothing(
    service: Service,
    failing_commit: Callable[..., None],
    change: Callable[[Service], patches.PatchInfo],
    events_after: list[tuple[str, str, str, str]],
) -> None:
    patches.publish(service, publication())
    canary = {"stage": "canary", "percentage": 5.0, "halted": False}
    failing_commit()
    with pytest.raises(Busy):
        change(service)
    assert stored(service) == {FIRST: ("canary", False, False)}
    assert served_rollout(service) == canary
    assert events(service) == []
    change(service)  # and it works once the database does
    assert events(service) == events_after
    (stage, halted, withdrawn) = stored(service)[FIRST]
    rollout = served_rollout(service)
    if withdrawn:
        assert rollout is None
    else:
        assert rollout is not None
        assert (rollout["stage"], rollout["halted"]) == (stage, halted)
        assert rollout != canary


def test_a_failed_publish_leaves_no_patch_in_the_database(
    service: Service, failing_signing: Callable[[], None]
) -> None:
    failing_signing()
    with pytest.raises(OSError, match="No space left"):
        patches.publish(service, publication())
    assert stored(service) == {}
    assert TARGET not in served_targets(service)
    info = patches.publish(service, publication())
    assert info.patch_id == FIRST  # the version was not used up
    assert stored(service) == {FIRST: ("canary", False, False)}
    assert served_rollout(service) == {"stage": "canary", "percentage": 5.0, "halted": False}


@pytest.mark.parametrize(
    "change",
    [
        lambda s: patches.promote(s, FIRST, Stage.ALL),
        lambda s: patches.halt(s, FIRST, "bad"),
        lambda s: patches.withdraw(s, FIRST),
        lambda s: patches.revoke(s, FIRST, "oops"),
    ],
    ids=["promote", "halt", "withdraw", "revoke"],
)
def test_a_failed_publish_of_a_change_is_taken_back(
    service: Service,
    failing_signing: Callable[[], None],
    change: Callable[[Service], patches.PatchInfo],
) -> None:
    patches.publish(service, publication())
    with service.transaction(readonly=True) as session:
        before = session.scalars(select(Patch)).one()
        columns = {c: getattr(before, c) for c in patches._ROLLOUT_COLUMNS}
    failing_signing()
    with pytest.raises(OSError, match="No space left"):
        change(service)
    with service.transaction(readonly=True) as session:
        after = session.scalars(select(Patch)).one()
        assert {c: getattr(after, c) for c in patches._ROLLOUT_COLUMNS} == columns
    assert served_rollout(service) == {"stage": "canary", "percentage": 5.0, "halted": False}
    assert "revoked" not in served_targets(service)[TARGET]["custom"]["livepatch"]
    assert events(service) == []


def test_revoke_signs_the_revocation_into_the_target_and_halts(
    service: Service, clock: Clock
) -> None:
    patches.publish(service, publication())
    patches.promote(service, FIRST, Stage.ALL)
    info = patches.revoke(service, FIRST, "oops in nfsd under load")
    assert info.revoked is not None and info.state.halted
    signed = served_targets(service)[TARGET]["custom"]["livepatch"]
    at = clock().replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert signed["revoked"] == {"reason": "oops in nfsd under load", "at": at}
    assert signed["rollout"]["halted"] is True  # clients that predate `revoked` stop loading
    parsed = patchmeta.parse_patch_fields(TARGET, 1, {}, {"livepatch": signed})
    assert parsed.revoked is not None and parsed.revoked.reason == "oops in nfsd under load"
    assert events(service)[-1] == (FIRST, "revocation", "all", "manual")
    with pytest.raises(Conflict, match="already revoked"):
        patches.revoke(service, FIRST, "again")
    with pytest.raises(Conflict, match="stays revoked"):
        patches.resume(service, FIRST)
    assert patches.apply_engine(service) == []


@pytest.mark.parametrize("reason", ["", "a\x1b[2Jb", "x" * 1025, "two\nlines"])
def test_revoke_needs_a_printable_reason(service: Service, reason: str) -> None:
    patches.publish(service, publication())
    with pytest.raises(InvalidRequest, match="--reason"):
        patches.revoke(service, FIRST, reason)


def test_a_failed_publish_of_the_engine_is_taken_back(
    service: Service, clock: Clock, failing_signing: Callable[[], None]
) -> None:
    patches.publish(service, publication(**NO_EVIDENCE))
    clock.advance(hours=25)  # past the canary soak: the engine promotes
    failing_signing()
    with pytest.raises(OSError, match="No space left"):
        patches.apply_engine(service)
    assert stored(service) == {FIRST: ("canary", False, False)}
    assert served_rollout(service) == {"stage": "canary", "percentage": 5.0, "halted": False}
    assert events(service) == []
    [(patch_id, decision)] = patches.apply_engine(service)
    assert (patch_id, decision.state.stage) == (FIRST, Stage.MODERATE)
    assert stored(service) == {FIRST: ("moderate", False, False)}
    assert served_rollout(service) == {"stage": "moderate", "percentage": 30.0, "halted": False}
    assert events(service) == [(FIRST, "promotion", "moderate", "automatic")]


def test_a_publish_whose_undo_fails_too_can_be_withdrawn(
    service: Service,
    clock: Clock,
    failing_signing: Callable[[], None],
    failing_commit: Callable[..., None],
) -> None:
    """Signing fails, then so does the database: the patch is in the database only."""
    healthy = patches.publish(service, publication(**NO_EVIDENCE))
    other = patches.Publication(**{**publication().__dict__, "kernels": ["6.1.0-57-amd64"]})
    failing_signing()
    failing_commit(skip=1)  # the publish's own commit succeeds, its undo's fails
    with pytest.raises(OSError, match="No space left"):
        patches.publish(service, other)
    stranded = "lp-6.1.0-57-amd64-1"
    assert stored(service)[stranded] == ("canary", False, False)
    assert f"patches/{stranded}.ko" not in served_targets(service)  # machines never see it
    with pytest.raises(Conflict, match=r"not in the signed metadata.*withdraw it"):
        patches.promote(service, stranded)
    clock.advance(hours=25)
    # The engine goes on with the other patches instead of failing on it every round.
    assert [p for p, _ in patches.apply_engine(service)] == [healthy.patch_id]
    assert patches.withdraw(service, stranded).withdrawn
    assert stored(service)[stranded] == ("canary", False, True)
    assert served_rollout(service, healthy.target_name) == {
        "stage": "moderate",
        "percentage": 30.0,
        "halted": False,
    }


def test_a_failure_after_the_publish_commit_point_keeps_the_change(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """E.g. the directory fsync after timestamp.json was replaced: machines see the change."""
    repo = service.publisher.repository
    real = repo.publish

    def publish_then_fail() -> None:
        real()
        raise OSError(5, "Input/output error (injected)")

    monkeypatch.setattr(repo, "publish", publish_then_fail)
    info = patches.publish(service, publication())
    assert info.patch_id == FIRST
    assert stored(service) == {FIRST: ("canary", False, False)}
    assert served_rollout(service) == {"stage": "canary", "percentage": 5.0, "halted": False}
    patches.halt(service, FIRST)
    assert stored(service) == {FIRST: ("canary", True, False)}
    assert served_rollout(service) == {"stage": "canary", "percentage": 5.0, "halted": True}
    assert "after its commit point" in caplog.text


def test_a_publish_conflict_with_another_signer_is_taken_back(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (`livepatch-admin keys …`) published meanwhile: nothing of ours landed."""
    repo = service.publisher.repository

    def conflict() -> None:
        raise repository.PublishConflict()

    monkeypatch.setattr(repo, "publish", conflict)
    with pytest.raises(repository.PublishConflict):
        patches.publish(service, publication())
    assert stored(service) == {}
    assert TARGET not in served_targets(service)


def test_the_module_is_signed_only_if_our_key_has_not_signed_it(
    service: Service, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.root()  # opens the repository, creating the key directory
    clock.advance(minutes=1)  # the certificate was issued by the real clock, after the test's
    key, cert = KeyDirectory(service.config.keys_dir).current_signing()
    foreign = KeyDirectory(tmp_path / "foreign")
    foreign.init(algorithm="ecdsa")
    foreign_key, foreign_cert = foreign.current_signing()
    signings: list[bytes] = []
    real_sign = modsig.sign_module

    def sign_module(data: bytes, *args: Any) -> bytes:
        signings.append(data)
        return real_sign(data, *args)

    monkeypatch.setattr(modsig, "sign_module", sign_module)

    # Unsigned: signed by our current certificate.
    unsigned = patches.publish(service, publication())
    blob = served_blob(service, unsigned.target_name)
    assert signings == [MODULE]
    assert modsig.verify_module(blob, [cert], now=clock()).certificate == cert
    assert modsig.strip_signature(blob) == MODULE
    assert unsigned.sha256 == hashlib.sha256(blob).hexdigest()

    # Already signed by our key: published byte for byte, not signed again.
    ours = real_sign(module_named("livepatch_ours"), key, cert)
    signings.clear()
    kept = patches.publish(service, publication(ours))
    assert signings == []
    assert served_blob(service, kept.target_name) == ours

    # Signed by someone else's key: re-signed by ours, their signature replaced.
    theirs = real_sign(module_named("livepatch_theirs"), foreign_key, foreign_cert)
    resigned = patches.publish(service, publication(theirs))
    blob = served_blob(service, resigned.target_name)
    assert signings == [theirs]
    assert blob != theirs
    assert modsig.strip_signature(blob) == module_named("livepatch_theirs")
    modsig.verify_module(blob, [cert], now=clock())
    with pytest.raises(ModuleSignatureError):
        modsig.verify_module(blob, [foreign_cert], now=clock())


def metrics_text(service: Service) -> str:
    body = ops.metrics(service).body
    assert isinstance(body, bytes)
    return body.decode()


def sample(text: str, line: str) -> float:
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_manual_and_automatic_promotions_and_halts_are_counted(
    service: Service, clock: Clock
) -> None:
    text = metrics_text(service)
    assert "# TYPE livepatch_promotions_total counter\nlivepatch_promotions_total 0\n" in text
    assert "# TYPE livepatch_halts_total counter\nlivepatch_halts_total 0\n" in text
    patches.publish(service, publication(**NO_EVIDENCE))
    patches.promote(service, FIRST)
    patches.halt(service, FIRST, "looks wrong")
    patches.halt(service, FIRST, "looks very wrong")  # already halted: not a second halt
    with pytest.raises(Conflict):
        patches.promote(service, FIRST)  # refused: not counted
    patches.resume(service, FIRST)
    clock.advance(hours=49)  # past the moderate soak: the engine promotes to all
    [(_, decision)] = patches.apply_engine(service)
    assert decision.state.stage is Stage.ALL
    text = metrics_text(service)
    promoted = 'livepatch_promotions_total{stage="%s",trigger="%s"}'
    halted = 'livepatch_halts_total{stage="%s",trigger="%s"}'
    assert sample(text, promoted % ("moderate", "manual")) == 1
    assert sample(text, promoted % ("all", "automatic")) == 1
    assert sample(text, promoted % ("moderate", "automatic")) == 0
    assert sample(text, halted % ("moderate", "manual")) == 1
    assert re.findall(r"^livepatch_(?:promotions|halts)_total\{.*$", text, re.MULTILINE) == [
        'livepatch_promotions_total{stage="all",trigger="automatic"} 1',
        'livepatch_promotions_total{stage="moderate",trigger="manual"} 1',
        'livepatch_halts_total{stage="moderate",trigger="manual"} 1',
    ]
    # Counted from the database: another process (livepatch-admin) sees the same.
    other = Service(service.config, clock=clock)
    try:
        assert sample(metrics_text(other), promoted % ("moderate", "manual")) == 1
    finally:
        other.close()


def test_errors_of_the_catalogue_are_4xx(service: Service) -> None:
    patches.publish(service, publication())
    with pytest.raises(ServerError) as missing:
        patches.halt(service, "lp-nothing-1")
    assert missing.value.status == 404
    patches.withdraw(service, FIRST)
    with pytest.raises(Conflict):
        patches.withdraw(service, FIRST)
    with pytest.raises(Conflict, match="withdrawn"):
        patches.promote(service, FIRST)


def test_a_module_name_in_use_for_a_kernel_is_refused(service: Service) -> None:
    """The kernel loads one module of a name: a patch replacing another needs a new one."""
    first = patches.publish(service, publication())
    for kernels in ([KERNEL], ["5.10.0-1-amd64", KERNEL]):
        again = patches.Publication(**{**publication().__dict__, "kernels": kernels})
        with pytest.raises(InvalidRequest) as refused:
            patches.publish(service, again)
        assert refused.value.status == 422
        assert str(refused.value) == (
            f"livepatch_cve_2024_1086 is already the module name of {first.patch_id} for "
            f"kernel {KERNEL}; a cumulative patch needs a new module name so the kernel can "
            "load it next to the one it replaces."
        )
    assert list(stored(service)) == [first.patch_id]  # nothing of the refused ones
    assert [n for n in served_targets(service) if n.startswith("patches/")] == [TARGET]
    # A new name for the kernel, or the name for another kernel, is fine.
    renamed = patches.publish(service, publication(module_named("livepatch_cve_2024_1086_2")))
    assert renamed.module_name == "livepatch_cve_2024_1086_2"
    other = patches.Publication(**{**publication().__dict__, "kernels": ["6.1.0-57-amd64"]})
    assert patches.publish(service, other).module_name == "livepatch_cve_2024_1086"
    # A withdrawn patch no longer holds its name.
    patches.withdraw(service, first.patch_id)
    assert patches.publish(service, publication()).module_name == "livepatch_cve_2024_1086"
