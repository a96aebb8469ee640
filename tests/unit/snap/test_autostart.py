"""The notifier app installs its autostart entry for snapd's `snap userd --autostart`."""

from __future__ import annotations

from pathlib import Path

from livepatch.snap import autostart

REPO = Path(__file__).resolve().parents[3]


def snap_with_desktop_file(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    shipped = snap / autostart.SHIPPED
    shipped.parent.mkdir(parents=True)
    shipped.write_text((REPO / "interfaces" / autostart.DESKTOP_FILE).read_text())
    return snap


def test_the_entry_runs_the_snap_app_and_keeps_the_rest(tmp_path):
    snap = snap_with_desktop_file(tmp_path)
    user_data = tmp_path / "home" / "snap" / "livepatch" / "x1"
    target = autostart.install_autostart(snap, user_data)
    assert target == user_data / ".config" / "autostart" / "livepatch-notifier.desktop"
    text = target.read_text()
    assert "Exec=livepatch.notifier\n" in text
    assert "Exec=livepatch notifier" not in text
    shipped = (REPO / "interfaces" / autostart.DESKTOP_FILE).read_text().splitlines()
    kept = [line for line in shipped if not line.startswith("Exec=")]
    assert [line for line in text.splitlines() if not line.startswith("Exec=")] == kept


def test_a_current_entry_is_left_alone(tmp_path):
    snap = snap_with_desktop_file(tmp_path)
    user_data = tmp_path / "user"
    first = autostart.install_autostart(snap, user_data)
    assert first is not None
    mtime = first.stat().st_mtime_ns
    assert autostart.install_autostart(snap, user_data) is None
    assert first.stat().st_mtime_ns == mtime


def test_the_app_name_matches_snapcraft_yaml():
    import yaml

    project = yaml.safe_load((REPO / "snap" / "snapcraft.yaml").read_text())
    assert project["apps"]["notifier"]["autostart"] == autostart.DESKTOP_FILE
    assert f"{project['name']}.notifier" == autostart.APP_COMMAND
