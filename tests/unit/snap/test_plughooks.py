from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from livepatch.client.paths import Paths
from livepatch.errors import LivepatchError
from livepatch.snap import plughooks

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "interfaces/update-motd/91-livepatch"


def snap_tree(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    target = snap / "usr/share/livepatch/update-motd/91-livepatch"
    target.parent.mkdir(parents=True)
    target.write_text(SHIPPED.read_text())
    return snap


def test_the_installed_script_reads_the_confined_daemons_fragment(tmp_path):
    target = tmp_path / "91-livepatch"
    assert plughooks.install_motd(snap_tree(tmp_path), target) == f"installed {target}"
    assert target.stat().st_mode & 0o777 == 0o755
    lines = target.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert lines[2] == "LIVEPATCH_MOTD_FRAGMENT=/run/snap.livepatch/motd"
    assert lines[1].startswith(plughooks.MARKER)


def test_the_installed_script_prints_the_fragment(tmp_path):
    target = tmp_path / "91-livepatch"
    plughooks.install_motd(snap_tree(tmp_path), target)
    fragment = tmp_path / "motd"
    fragment.write_text(
        "#livepatch-motd v1 written=2000000000 checked=2000000000\nLivepatch is on.\n"
    )
    script = target.read_text().replace("/run/snap.livepatch/motd", str(fragment))
    target.write_text(script)
    shown = subprocess.run(["sh", str(target)], capture_output=True, text=True, check=True)
    assert "Livepatch is on." in shown.stdout


def test_remove_takes_only_our_script(tmp_path):
    target = tmp_path / "91-livepatch"
    assert plughooks.remove_motd(target) == f"{target} was not there"
    target.write_text("#!/bin/sh\necho someone else's\n")
    assert "did not write it" in plughooks.remove_motd(target)
    assert target.exists()
    plughooks.install_motd(snap_tree(tmp_path), target)
    assert plughooks.remove_motd(target) == f"removed {target}"
    assert not target.exists()


def test_a_kernel_plug_hook_without_a_daemon_says_the_daemon_will_use_it(tmp_path):
    paths = Paths(tmp_path)
    said = plughooks.run("connect-plug-kernel-state", tmp_path, paths)
    assert said.startswith("kernel-state connected; the daemon will use it when it starts")


def test_an_unknown_plug_hook_fails(tmp_path):
    with pytest.raises(LivepatchError):
        plughooks.run("connect-plug-camera", tmp_path, Paths(tmp_path))
    with pytest.raises(LivepatchError):
        plughooks.motd_script("no shebang\n")
