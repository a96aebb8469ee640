"""The status fast path: the full path's document in settled states, None otherwise."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livepatch.client import commands, host, quickstatus
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.state import (
    CheckState,
    Crash,
    Enrolment,
    ErrorRecord,
    Fix,
    Health,
    HealthWatch,
    PatchRecord,
    PatchState,
    Report,
    Revoked,
    State,
    StateFile,
    Support,
    to_json,
)
from livepatch.client.transitions import ModuleStatus, reconcile
from livepatch.rollout import Tier
from tests.unit.client.fakes import World
from tests.unit.kernel.fakes import FakeKernel

KEY = "6.1.0-56-amd64"
T0 = datetime(2026, 8, 1, 12, 0, 0, 123456, tzinfo=UTC)
ENROLMENT = Enrolment("m-1", "community", "https://patches.test", T0)
FIX1 = Fix("cve-2024-1086", "high", "nf_tables use-after-free")
FIX2 = Fix("cve-2024-0001", "medium", "")
APPLIED = PatchRecord("lp-1", "1", "livepatch_1", KEY, (FIX1,))
NEWER = PatchRecord("lp-2", "2", "livepatch_2", KEY, (FIX1, FIX2))
CHECKED = State(
    enrolment=ENROLMENT,
    kernel=KEY,
    supported=Support.SUPPORTED,
    check_state=CheckState.CHECKED,
    last_check=T0,
    next_check=T0 + timedelta(hours=1),
    patch_state=PatchState.NOTHING_TO_APPLY,
)


@pytest.fixture
def tree(tmp_path: Path) -> FakeKernel:
    root = tmp_path / "root"
    root.mkdir()
    return FakeKernel(root)


def full(world: World, tree: FakeKernel) -> dict[str, Any]:
    doc = commands.status(dataclasses.replace(world.runtime(), kernel=KernelAdapter(tree.root)))
    return {**doc, "Uptime": 0}


def quick(world: World, tree: FakeKernel) -> dict[str, Any] | None:
    doc = quickstatus.build(str(world.paths.root), str(tree.root))
    return None if doc is None else {**doc, "Uptime": 0}


SETTLED = {
    "enrolled, checked": CHECKED,
    "applied, a newer patch known, errors, reports queued": dataclasses.replace(
        CHECKED,
        patch_state=PatchState.APPLIED,
        applied=APPLIED,
        available=NEWER,
        errors=(ErrorRecord("service-unreachable", "Cannot reach it."),),
        pending_reports=(Report("lp-1", KEY, "applied", duration_ms=12),),
    ),
    "disabled with its patch still loaded": dataclasses.replace(
        CHECKED, enrolment=None, applied=APPLIED, patch_state=PatchState.APPLIED
    ),
    "enrolled on a stable tier, never checked": State(
        enrolment=dataclasses.replace(ENROLMENT, tier="stable"), kernel=KEY
    ),
    "applied and watched, a verdict queued": dataclasses.replace(
        CHECKED,
        patch_state=PatchState.APPLIED,
        applied=APPLIED,
        watch=HealthWatch("lp-1", "livepatch_1", T0 + timedelta(minutes=5), 0, 7, ("f",)),
        health=Health("lp-1", "watching"),
        pending_reports=(
            Report("lp-1", KEY, "applied", health="unhealthy", evidence="WARNING: x"),
        ),
    ),
    "a crash recorded, a revoked patch left": dataclasses.replace(
        CHECKED,
        health=Health("lp-1", "unhealthy", "taint W"),
        crashed=Crash("lp-2", "2", "livepatch_2", "boot-1", T0),
        revoked=Revoked("lp-1", "1", "oops in v1"),
    ),
}


@pytest.mark.parametrize("state", SETTLED.values(), ids=SETTLED.keys())
def test_settled_states_get_the_full_paths_document(
    world: World, tree: FakeKernel, state: State
) -> None:
    tree.add_patch("livepatch_1")
    StateFile(world.paths.state).save(state)
    assert quick(world, tree) == full(world, tree)


def test_a_machine_never_enrolled_gets_the_full_paths_document(
    world: World, tree: FakeKernel
) -> None:
    world.paths.state.unlink(missing_ok=True)
    doc = quick(world, tree)
    assert doc is not None and doc["Enrolled"] is False
    assert doc == full(world, tree)


@pytest.mark.parametrize("tier", ["stable", "gold", ""])
def test_the_configured_tier_counts_as_on_the_full_path(
    world: World, tree: FakeKernel, tier: str
) -> None:
    StateFile(world.paths.state).save(CHECKED)
    world.paths.config.write_text(json.dumps({"remote-server": "https://x.test", "tier": tier}))
    doc = quick(world, tree)
    assert doc is not None and doc["tier"] == (tier if tier == "stable" else "community")
    assert doc == full(world, tree)


UNSETTLED = {
    "booted another kernel": dataclasses.replace(CHECKED, kernel="6.1.0-55-amd64"),
    "a load in flight": dataclasses.replace(
        CHECKED, applying=APPLIED, patch_state=PatchState.APPLYING
    ),
    "its patch gone from the kernel": dataclasses.replace(
        CHECKED, applied=NEWER, patch_state=PatchState.APPLIED
    ),
    "applied without a patch": dataclasses.replace(CHECKED, patch_state=PatchState.APPLIED),
}


@pytest.mark.parametrize("state", UNSETTLED.values(), ids=UNSETTLED.keys())
def test_states_reconciling_would_change_take_the_full_path(
    world: World, tree: FakeKernel, state: State
) -> None:
    tree.add_patch("livepatch_1")
    StateFile(world.paths.state).save(state)
    assert quick(world, tree) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: "{",
        lambda r: json.dumps({k: v for k, v in r.items() if k != "errors"}),
        lambda r: json.dumps({**r, "patch_state": "melted"}),
        lambda r: json.dumps({**r, "last_check": "2026-08-01T12:00:00Z"}),
        lambda r: json.dumps({**r, "failures": "2"}),
        lambda r: json.dumps({**r, "pending_reports": [{"patch_id": "x", "bogus": 1}]}),
        lambda r: json.dumps({**r, "enrolment": {**r["enrolment"], "machine_id": 7}}),
        lambda r: json.dumps({**r, "health": {"patch_id": "lp-1"}}),
        lambda r: json.dumps({**r, "crashed": {"patch_id": "lp-1", "version": "1", "at": "x"}}),
        lambda r: json.dumps({**r, "revoked": ["lp-1"]}),
    ],
    ids=[
        "garbled",
        "no-errors",
        "bad-state",
        "other-time-form",
        "bad-type",
        "bad-report",
        "id",
        "bad-health",
        "bad-crash",
        "bad-revoked",
    ],
)
def test_a_record_it_would_not_have_written_takes_the_full_path(
    world: World, tree: FakeKernel, edit: Any
) -> None:
    world.paths.state.write_text(edit(to_json(CHECKED)))
    assert quick(world, tree) is None


def test_a_kernel_file_it_cannot_read_takes_the_full_path(world: World, tree: FakeKernel) -> None:
    StateFile(world.paths.state).save(CHECKED)
    (tree.root / "proc/version_signature").mkdir(parents=True)
    assert quick(world, tree) is None


def test_an_invalid_settings_file_takes_the_full_path(world: World, tree: FakeKernel) -> None:
    StateFile(world.paths.state).save(CHECKED)
    world.paths.config.write_text('{"check-interval": 0}')
    assert quick(world, tree) is None


def test_a_state_file_from_before_the_safety_records_still_takes_the_fast_path(
    world: World, tree: FakeKernel
) -> None:
    record = {k: v for k, v in to_json(CHECKED).items() if k not in quickstatus.OPTIONAL}
    world.paths.state.write_text(json.dumps(record))
    doc = quick(world, tree)
    assert doc is not None and doc["Health"] is None and doc["Revoked"] is None
    assert doc == full(world, tree)


def test_its_value_sets_are_the_state_models() -> None:
    assert {s.value for s in Support} == quickstatus.SUPPORT
    assert {s.value for s in CheckState} == quickstatus.CHECK_STATES
    assert {s.value for s in PatchState} == quickstatus.PATCH_STATES
    assert tuple(t.value for t in Tier) == quickstatus.TIERS
    assert quickstatus.TIERS[0] == Tier.COMMUNITY  # effective_tier's fallback
    assert {f.name for f in dataclasses.fields(Report)} == quickstatus.REPORT_FIELDS
    assert to_json(State()) == quickstatus.NEVER_ENROLLED


RECORDS = st.sampled_from([None, APPLIED, NEWER])


@settings(deadline=None, max_examples=200)
@given(
    kernel=st.sampled_from([KEY, "6.1.0-55-amd64", None]),
    patch_state=st.sampled_from(list(PatchState)),
    applied=RECORDS,
    applying=RECORDS,
    loaded=st.dictionaries(
        st.sampled_from(["livepatch_1", "livepatch_2", "other"]),
        st.builds(ModuleStatus, st.booleans(), st.booleans()),
    ),
)
def test_settled_means_reconcile_changes_nothing(
    kernel: str | None,
    patch_state: PatchState,
    applied: PatchRecord | None,
    applying: PatchRecord | None,
    loaded: dict[str, ModuleStatus],
) -> None:
    state = dataclasses.replace(
        CHECKED, kernel=kernel, patch_state=patch_state, applied=applied, applying=applying
    )
    enabled = {name: status.enabled for name, status in loaded.items()}
    if quickstatus.settled(to_json(state), KEY, enabled):
        assert reconcile(state, KEY, loaded) == state


def test_settled_holds_for_the_everyday_states() -> None:
    live = {"livepatch_1": True}
    assert quickstatus.settled(to_json(CHECKED), KEY, {})
    assert quickstatus.settled(to_json(SETTLED["disabled with its patch still loaded"]), KEY, live)


CPUINFO = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon(R) Gold 6338 @ 2.00GHz\n\n"
    "processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: another\n\n"
)
CPU_MODEL_READERS = {
    "fast path": lambda root: quickstatus._cpu_model(str(root)),
    "full path": host._cpu_model,
}


@pytest.mark.parametrize("read", CPU_MODEL_READERS.values(), ids=CPU_MODEL_READERS.keys())
def test_the_cpu_model_is_the_first_processors(tmp_path: Path, read: Any) -> None:
    assert read(tmp_path) == ""  # no /proc/cpuinfo
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n\n")
    assert read(tmp_path) == ""  # arm64 names no model
    (tmp_path / "proc/cpuinfo").write_text(CPUINFO)
    assert read(tmp_path) == "Xeon(R) Gold 6338 @ 2.00GHz"


@pytest.mark.parametrize("read", CPU_MODEL_READERS.values(), ids=CPU_MODEL_READERS.keys())
def test_the_cpu_model_is_read_no_further_than_its_line(tmp_path: Path, read: Any) -> None:
    """The kernel writes /proc/cpuinfo a CPU at a time as it is read: a reader that
    wanted the rest would wait here, on a pipe whose writer stays open for 5 s."""
    (tmp_path / "proc").mkdir()
    os.mkfifo(tmp_path / "proc/cpuinfo")
    done = threading.Event()

    def write() -> None:
        with open(tmp_path / "proc/cpuinfo", "w") as stream:
            stream.write(CPUINFO)
            stream.flush()
            done.wait(5)

    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    try:
        assert read(tmp_path) == "Xeon(R) Gold 6338 @ 2.00GHz"
        assert time.monotonic() - started < 4
    finally:
        done.set()
        writer.join()
