from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from datetime import timedelta

import pytest

from livepatch.client import transitions as t
from livepatch.client.errors import Busy, CorruptState
from livepatch.client.state import (
    Credential,
    CredentialFile,
    Enrolment,
    ErrorRecord,
    Report,
    State,
    StateFile,
    from_json,
    to_json,
)
from livepatch.client.store import clean_temporaries, is_locked, locked, write_atomic
from tests.unit.client.fakes import KERNEL, T0, patch


def full_state() -> State:
    state = State(enrolment=Enrolment("m-1", "stable", "https://p.test", T0), kernel=KERNEL)
    state = t.planned(
        state, __import__("livepatch.client.planner").client.planner.Apply(patch("4")), KERNEL, T0
    )
    state = t.applying(state, t.record(patch("4"), KERNEL))
    state = t.apply_succeeded(
        state, t.record(patch("4"), KERNEL), Report("lp", KERNEL, "applied", None, None, 12, 4096)
    )
    state = t.check_failed(
        state, ErrorRecord("tls-failure", "bad cert"), T0 + timedelta(hours=1), retryable=True
    )
    return t.scheduled(state, T0 + timedelta(hours=2))


def test_state_round_trips_through_json(tmp_path):
    state = full_state()
    assert from_json(json.loads(json.dumps(to_json(state)))) == state
    store = StateFile(tmp_path / "state.json")
    store.save(state)
    assert store.load() == state
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o644


def test_missing_state_is_the_empty_state(tmp_path):
    assert StateFile(tmp_path / "none.json").load() == State()


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"errors": 3}', b'{"patch_state": "odd", "errors": []}']
)
def test_garbage_state_is_reported_not_replaced(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(CorruptState) as caught:
        StateFile(path).load()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content


def test_credential_file_is_private_and_never_printed(tmp_path):
    store = CredentialFile(tmp_path / "credential.json")
    credential = Credential("very-secret", T0 + timedelta(days=30), T0)
    store.save(credential)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.load() == credential
    assert "very-secret" not in repr(credential)
    store.remove()
    assert store.load() is None


def test_write_atomic_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "f"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_clean_temporaries_removes_only_leftovers(tmp_path):
    (tmp_path / ".state.json.123.abcd.tmp").write_text("half")
    (tmp_path / "state.json").write_text("{}")
    removed = clean_temporaries(tmp_path)
    assert [p.name for p in removed] == [".state.json.123.abcd.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_lock_is_exclusive_and_visible(tmp_path):
    lock = tmp_path / "lock"
    assert not is_locked(lock)
    with locked(lock):
        assert is_locked(lock)
        with pytest.raises(Busy), locked(lock, wait=False):
            pass
    assert not is_locked(lock)


def test_a_status_probe_does_not_make_the_lock_look_taken(tmp_path):
    """is_locked holds a shared lock for an instant; locked(wait=False) outlasts it."""
    lock = tmp_path / "lock"
    lock.touch()
    probe = os.open(lock, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)
    threading.Timer(0.1, os.close, (probe,)).start()
    with locked(lock, wait=False):
        assert is_locked(lock)
