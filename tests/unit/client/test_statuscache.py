"""The status cache: a hit serves exactly what the slow path built; any input change misses."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from livepatch import cli
from livepatch.client import commands, statuscache
from livepatch.client.checkin import Runtime
from livepatch.client.kernelport import KernelAdapter
from tests.unit.client.fakes import World
from tests.unit.kernel.fakes import FakeKernel


@pytest.fixture
def tree(tmp_path: Path) -> FakeKernel:
    root = tmp_path / "root"
    root.mkdir()
    kernel = FakeKernel(root)
    kernel.write("proc/sys/kernel/random/boot_id", "0b7e6f0e-0000-4000-8000-000000000001\n")
    kernel.write("proc/uptime", "1234.56 2000.00\n")
    kernel.add_patch("lp_fix1")
    return kernel


@pytest.fixture
def state_dir(world: World) -> str:
    (world.paths.root / "state.json").write_text('{"version": 1}')
    return str(world.paths.root)


def saved(state_dir: str, tree: FakeKernel, doc: dict[str, object]) -> None:
    statuscache.save(state_dir, statuscache.inputs(state_dir, str(tree.root)), doc)


def test_a_hit_returns_the_document_with_live_fields_refreshed(
    state_dir: str, tree: FakeKernel
) -> None:
    saved(state_dir, tree, {"Enrolled": True, "Uptime": 1, "Daemon-Running": True})
    doc = statuscache.load(state_dir, str(tree.root))
    assert doc == {"Enrolled": True, "Uptime": 1234, "Daemon-Running": False}


@pytest.mark.parametrize(
    "change",
    [
        lambda d, k: Path(d, "state.json").write_text('{"version": 1, "x": 2}'),
        lambda d, k: Path(d, "config.json").write_text("{}"),
        lambda d, k: k.write("sys/kernel/livepatch/lp_fix1/enabled", "0\n"),
        lambda d, k: k.write("sys/kernel/livepatch/lp_fix1/transition", "1\n"),
        lambda d, k: k.add_patch("lp_fix2"),
        lambda d, k: k.write("proc/sys/kernel/random/boot_id", "another boot\n"),
        lambda d, k: k.write("proc/sys/kernel/osrelease", "6.1.0-57-amd64\n"),
        lambda d, k: k.write("proc/version_signature", "Ubuntu 6.8.0-1.1-generic 6.8.1\n"),
        # what a snap sees once its kernel-state plug is disconnected: no read
        lambda d, k: os.remove(os.path.join(k.root, "proc/sys/kernel/arch")),
    ],
    ids=[
        "state",
        "config",
        "disabled",
        "transition",
        "new-patch",
        "reboot",
        "release",
        "signature",
        "kernel-state-plug-gone",
    ],
)
def test_any_change_in_an_input_misses(state_dir: str, tree: FakeKernel, change) -> None:
    saved(state_dir, tree, {"Enrolled": True})
    assert statuscache.load(state_dir, str(tree.root)) is not None
    change(state_dir, tree)
    assert statuscache.load(state_dir, str(tree.root)) is None


def test_another_client_version_misses(
    state_dir: str, tree: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved(state_dir, tree, {"Enrolled": True})
    monkeypatch.setattr(statuscache, "__version__", "99.0")
    assert statuscache.load(state_dir, str(tree.root)) is None


def test_a_cache_built_on_another_root_never_serves_this_one(
    state_dir: str, tree: FakeKernel
) -> None:
    saved(state_dir, tree, {"Enrolled": True})
    assert statuscache.load(state_dir, "/") is None


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"key": {}}', b"\xff\xfe"])
def test_a_garbled_cache_is_a_miss(state_dir: str, tree: FakeKernel, content: bytes) -> None:
    Path(state_dir, statuscache.CACHE_NAME).write_bytes(content)
    assert statuscache.load(state_dir, str(tree.root)) is None


def test_the_cache_is_world_readable_and_leaves_no_temporaries(
    state_dir: str, tree: FakeKernel
) -> None:
    saved(state_dir, tree, {"Enrolled": True})
    path = Path(state_dir, statuscache.CACHE_NAME)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in Path(state_dir).iterdir() if p.name.endswith(".tmp")] == []


def test_state_dir_follows_the_environment() -> None:
    assert statuscache.state_dir({}) == "/var/lib/livepatch"
    assert statuscache.state_dir({"SNAP_DATA": "/var/snap/livepatch/x1"}) == (
        "/var/snap/livepatch/x1"
    )
    assert statuscache.state_dir({"LIVEPATCH_STATE_DIR": "/s", "SNAP_DATA": "/x"}) == "/s"


def test_status_on_a_kernel_tree_stores_what_it_built(world: World, tree: FakeKernel) -> None:
    rt = dataclasses.replace(world.runtime(), kernel=KernelAdapter(tree.root))
    doc = commands.status(rt)
    assert statuscache.load(str(world.paths.root), str(tree.root)) == {
        **doc,
        "Uptime": 1234,
        "Daemon-Running": False,
    }


def test_status_on_a_fake_kernel_stores_nothing(world: World) -> None:
    commands.status(world.runtime())
    assert not (world.paths.root / statuscache.CACHE_NAME).exists()


@pytest.fixture
def real_root_cache(world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    """A cache valid for this machine's own /proc and /sys, as the daemon would leave it."""
    state_dir = str(world.paths.root)
    monkeypatch.setenv("LIVEPATCH_STATE_DIR", state_dir)
    monkeypatch.setenv("NO_COLOR", "1")
    return state_dir


def test_cli_status_is_served_from_a_valid_cache(
    real_root_cache: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {
        "Client-Version": "0.1.0",
        "Machine-Id": "cached-machine",
        "Enrolled": True,
        "Daemon-Running": False,
        "Status": [{"Kernel": "6.1.0-56-amd64", "Running": True}],
    }
    statuscache.save(real_root_cache, statuscache.inputs(real_root_cache), doc)

    def no_slow_path() -> Runtime:
        raise AssertionError("the slow path ran")

    monkeypatch.setattr(cli, "_runtime", no_slow_path)
    assert cli.main(["status", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["Machine-Id"] == "cached-machine"
    assert err == ""


def test_cli_status_ignores_a_stale_cache(
    real_root_cache: str, world: World, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    doc = {"Machine-Id": "cached-machine", "Enrolled": True, "Daemon-Running": False}
    statuscache.save(real_root_cache, statuscache.inputs(real_root_cache), doc)
    os.utime(Path(real_root_cache, "config.json"), ns=(1, 1))
    monkeypatch.setattr(cli, "_runtime", world.runtime)
    code = cli.main(["status", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 1 and "Machine is not enabled" in err
    assert json.loads(out)["Machine-Id"] == ""


@pytest.mark.parametrize(
    "argv",
    [["status", "--format", "xml"], ["status", "--bogus"], ["refresh"], ["status", "--debug"]],
)
def test_the_fast_path_steps_aside_for_what_it_does_not_handle(argv: list[str]) -> None:
    assert cli._fast_status(argv) is None
