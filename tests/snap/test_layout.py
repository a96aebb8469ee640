"""The .snap `make snap` builds, unpacked and checked against core24's layout.

core24 carries CPython 3.12 at /usr/bin/python3.12 (and /usr/bin/python3); the snap
must link to it exactly as snapcraft's python plugin does, and nothing in it may
name the build machine's paths or another Python version.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from livepatch.snap import build

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# What the core24 base provides that a link in the snap may point at.
BASE_FILES = {"/usr/bin/python3.12", "/usr/bin/python3"}
ALLOWED_INTERPRETERS = {"/usr/bin/env python3", "/bin/sh", "/bin/bash", "/usr/bin/env bash"}
BUILD_PATHS = re.compile(rb"/root/|/work/|\.pyenv|/tmp/")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build.build(REPO, REPO / "build" / "snap")
    target = tmp_path_factory.mktemp("layout") / "squashfs-root"
    subprocess.run(
        ["unsquashfs", "-q", "-n", "-d", str(target), str(built.snap)],
        check=True,
        capture_output=True,
    )
    return target


def test_the_interpreter_links_are_core24s(tree: Path) -> None:
    assert os.readlink(tree / "bin/python3") == "/usr/bin/python3.12"
    assert os.readlink(tree / "bin/python") == "/usr/bin/python3"
    assert os.readlink(tree / "bin/python3.12") == "python3"
    config = dict(
        line.split(" = ", 1) for line in (tree / "pyvenv.cfg").read_text().splitlines() if line
    )
    assert config["home"] == "/usr/bin"
    assert config["version"].startswith("3.12.")
    assert config["executable"] == "/usr/bin/python3.12"
    assert "command" not in config


def test_only_python3_12_is_packaged(tree: Path) -> None:
    assert sorted(p.name for p in (tree / "lib").iterdir()) == ["python3.12"]
    assert (tree / "lib/python3.12/site-packages/livepatch/__init__.py").is_file()
    tags = {
        match.group(1)
        for path in tree.rglob("*.so")
        if (match := re.search(r"\.cpython-(\d+)-", path.name))
    }
    assert tags == {"312"}, tags  # extension modules built for 3.12 (cryptography, cffi, yaml)


def test_every_shebang_runs_on_core24(tree: Path) -> None:
    checked = 0
    for path in tree.rglob("*"):
        if path.is_symlink() or not path.is_file() or not os.access(path, os.X_OK):
            continue
        with path.open("rb") as stream:
            head = stream.readline()
        if not head.startswith(b"#!"):
            continue
        interpreter = head[2:].decode().strip()
        assert interpreter in ALLOWED_INTERPRETERS, f"{path.relative_to(tree)}: #!{interpreter}"
        checked += 1
    assert checked >= 5  # bin/livepatch, the launchers, the hooks


def test_every_link_resolves_in_the_snap_or_the_base(tree: Path) -> None:
    for path in tree.rglob("*"):
        if not path.is_symlink():
            continue
        target = os.readlink(path)
        if target.startswith("/"):
            assert target in BASE_FILES, f"{path.relative_to(tree)} -> {target}"
        else:
            # one hop: a link to a link is checked when the loop reaches that one
            hop = Path(os.path.normpath(path.parent / target))
            assert hop.is_relative_to(tree), f"{path.relative_to(tree)} -> {target}"
            assert hop.is_symlink() or hop.exists(), f"{path.relative_to(tree)} -> {target}"


def test_no_file_names_the_build_machine(tree: Path) -> None:
    offenders = []
    for path in [*tree.glob("bin/*"), *tree.glob("meta/**/*"), *tree.glob("snap/hooks/*")]:
        if path.is_file() and not path.is_symlink() and BUILD_PATHS.search(path.read_bytes()):
            offenders.append(str(path.relative_to(tree)))
    assert "pyvenv.cfg" not in offenders
    assert not BUILD_PATHS.search((tree / "pyvenv.cfg").read_bytes())
    assert offenders == []


def test_meta_names_core24(tree: Path) -> None:
    meta = yaml.safe_load((tree / "meta/snap.yaml").read_text())
    assert meta["base"] == "core24" and meta["confinement"] == "strict"
