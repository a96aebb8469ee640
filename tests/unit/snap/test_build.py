"""The build's pure parts: snap.yaml from snapcraft.yaml, filters, dump parts, wrappers, cache key.

The whole build checked against core24 is tests/snap; installed by the real snapd: tests/snapd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from livepatch import __version__
from livepatch.snap import build

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def project():
    return build.load_project(REPO)


@pytest.fixture(scope="module")
def metadata(project):
    return build.snap_metadata(project, version=__version__, arch="amd64")


def test_snap_yaml_carries_the_project_as_snapcraft_writes_it(metadata):
    assert list(metadata)[:4] == ["name", "title", "version", "summary"]
    assert (metadata["name"], metadata["version"], metadata["base"]) == (
        "livepatch",
        __version__,
        "core24",
    )
    assert (metadata["confinement"], metadata["grade"]) == ("strict", "stable")
    assert metadata["architectures"] == ["amd64"]
    assert metadata["environment"]["PATH"] == build.SNAP_PATH
    assert "$SNAP/usr/lib/x86_64-linux-gnu" in metadata["environment"]["LD_LIBRARY_PATH"]
    for key in ("parts", "adopt-info", "platforms"):
        assert key not in metadata


def test_the_apps_are_the_cli_the_daemon_and_the_notifier(metadata):
    apps = metadata["apps"]
    assert apps["livepatch"]["command"] == "bin/livepatch"
    daemon = apps["livepatchd"]
    assert (daemon["command"], daemon["daemon"], daemon["restart-condition"]) == (
        "bin/livepatch daemon",
        "simple",
        "on-failure",
    )
    assert daemon["slots"] == ["livepatch-service"]
    assert apps["notifier"]["autostart"] == "livepatch-notifier.desktop"
    assert "after" not in daemon  # snapd orders services after network.target itself


def test_plugs_grant_what_the_kernel_layer_touches(metadata):
    plugs = metadata["plugs"]
    assert plugs["livepatch-sysfs"] == {
        "interface": "system-files",
        "write": ["/sys/kernel/livepatch"],
    }
    reads = plugs["kernel-state"]["read"]
    for path in (
        "/proc/sys/kernel/modules_disabled",
        "/proc/sys/kernel/tainted",
        "/sys/kernel/security/lockdown",
        "/sys/kernel/notes",
        "/proc/sys/kernel/version",
    ):
        assert path in reads
    for path in reads:  # snapd's rules for system-files paths (common_files.go)
        assert path.startswith("/") and os.path.normpath(path) == path
        assert not any(c in path for c in '*?[]{}^"~')
    assert metadata["slots"]["livepatch-service"] == {
        "interface": "dbus",
        "bus": "system",
        "name": "io.livepatch.Livepatch1",
    }
    daemon_plugs = set(metadata["apps"]["livepatchd"]["plugs"])
    assert {"network", "kernel-module-control", "livepatch-sysfs", "kernel-state"} <= daemon_plugs


def test_every_plug_in_snapcraft_yaml_has_a_comment_saying_why():
    text = (REPO / "snap" / "snapcraft.yaml").read_text()
    in_plug_list = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "plugs:":
            in_plug_list = True
            continue
        if in_plug_list and stripped.startswith("- "):
            assert " # " in stripped, f"no comment on plug line {line!r}"
        elif stripped and not stripped.startswith("#"):
            in_plug_list = False


def test_hooks_are_declared_with_their_plugs(metadata):
    hooks = metadata["hooks"]
    assert set(hooks) == {n.name for n in (REPO / "hooks").iterdir()}
    assert hooks["install"] == {}
    assert "network" in hooks["remove"]["plugs"]


def test_unsupported_snapcraft_keys_are_refused(tmp_path):
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "snapcraft.yaml").write_text(
        yaml.safe_dump({"name": "x", "apps": {"a": {"command": "x", "extensions": ["gnome"]}}})
    )
    with pytest.raises(build.BuildError, match=r"apps\.a uses extensions"):
        build.load_project(tmp_path)
    (tmp_path / "snap" / "snapcraft.yaml").write_text(
        yaml.safe_dump({"name": "x", "parts": {"p": {"plugin": "rust"}}})
    )
    with pytest.raises(build.BuildError, match="uses the 'rust' plugin"):
        build.load_project(tmp_path)


def test_snap_pack_accepts_the_generated_metadata(tmp_path, metadata):
    """`snap pack --check-skeleton` validates snap.yaml the way snapd parses it."""
    prime = tmp_path / "prime"
    (prime / "meta").mkdir(parents=True)
    (prime / "meta" / "snap.yaml").write_text(build.dump_yaml(metadata))
    for app in metadata["apps"].values():
        program = prime / app["command"].split()[0]
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    done = subprocess.run(
        ["snap", "pack", "--check-skeleton", str(prime)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    broken = dict(
        metadata,
        apps={
            **metadata["apps"],
            "livepatchd": {**metadata["apps"]["livepatchd"], "after": ["network"]},
        },
    )
    (prime / "meta" / "snap.yaml").write_text(build.dump_yaml(broken))
    done = subprocess.run(
        ["snap", "pack", "--check-skeleton", str(prime)], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "network" in done.stderr


def test_filters_keep_and_drop_like_snapcraft(tmp_path):
    root = tmp_path / "install"
    for name in (
        "bin/pip",
        "bin/pip3.11",
        "bin/livepatch",
        "lib/python3.11/site-packages/pip/__init__.py",
        "lib/python3.11/site-packages/pip-26.3.dist-info/RECORD",
        "lib/python3.11/site-packages/livepatch/server/app.py",
        "lib/python3.11/site-packages/livepatch/cli.py",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    build.apply_filter(
        root,
        [
            "-bin/pip*",
            "-lib/python3*/site-packages/pip",
            "-lib/python3*/site-packages/pip-*",
            "-lib/python3*/site-packages/livepatch/server",
        ],
    )
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["bin/livepatch", "lib/python3.11/site-packages/livepatch/cli.py"]
    assert not (root / "lib/python3.11/site-packages/pip").exists()
    build.apply_filter(root, ["bin/livepatch"])
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["bin", "bin/livepatch"]


def test_dump_part_organizes_and_stages(tmp_path, project):
    install = tmp_path / "install"
    part = project["parts"]["interfaces"]
    build.build_dump_part(REPO, part, install)
    build.apply_filter(install, part["stage"])
    files = sorted(str(p.relative_to(install)) for p in install.rglob("*") if p.is_file())
    assert files == [
        "usr/share/dbus-1/interfaces/io.livepatch.Livepatch1.xml",
        "usr/share/livepatch/livepatch-notifier.desktop",
        "usr/share/livepatch/status.schema.json",
        "usr/share/livepatch/update-motd/91-livepatch",
    ]
    script = install / "usr/share/livepatch/update-motd/91-livepatch"
    assert script.read_bytes() == (REPO / "interfaces/update-motd/91-livepatch").read_bytes()
    assert script.stat().st_mode & 0o111, "the motd script must stay executable"


def test_hook_wrappers_exec_the_hooks_like_snapcraft(tmp_path):
    prime = tmp_path / "prime"
    shutil.copytree(REPO / "hooks", prime / "snap" / "hooks")
    names = build.write_hook_wrappers(prime)
    assert names == sorted(p.name for p in (REPO / "hooks").iterdir())
    for name in names:
        wrapper = prime / "meta" / "hooks" / name
        assert wrapper.read_text() == f'#!/bin/sh\nexec "$SNAP/snap/hooks/{name}" "$@"\n'
        assert os.access(wrapper, os.X_OK)


def test_shebangs_of_the_venv_become_env_python3(tmp_path):
    install = tmp_path / "install"
    (install / "bin").mkdir(parents=True)
    script = install / "bin" / "livepatch"
    script.write_text(f"#!{install}/bin/python3\nimport sys\n")
    script.chmod(0o755)
    other = install / "bin" / "activate"
    other.write_text(f"#!{install}/bin/python3\n")  # not executable: left alone
    build._fix_shebangs(install)
    assert script.read_text() == "#!/usr/bin/env python3\nimport sys\n"
    assert other.read_text().startswith(f"#!{install}")


def test_the_cache_key_follows_inputs_and_ignores_bytecode(tmp_path):
    repo = tmp_path / "repo"
    for name in ("pyproject.toml", "src/livepatch/__init__.py", "hooks/install"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    python = Path("/usr/bin/python3")
    first = build.input_digest(repo, python)
    (repo / "src/livepatch/__pycache__").mkdir()
    (repo / "src/livepatch/__pycache__/x.pyc").write_bytes(b"\0")
    (repo / "notes.txt").write_text("not an input")
    assert build.input_digest(repo, python) == first
    (repo / "hooks/install").chmod(0o755)
    assert build.input_digest(repo, python) != first
    (repo / "hooks/install").chmod(0o644)
    (repo / "src/livepatch/__init__.py").write_text("changed")
    assert build.input_digest(repo, python) != first
