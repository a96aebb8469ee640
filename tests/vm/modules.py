"""Build external kernel modules against installed headers, with a cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.vm.qemu import default_release

CACHE = Path.home() / ".cache" / "livepatch" / "modules"


class BuildError(Exception):
    """make failed; the message carries its output."""


def headers_dir(release: str) -> Path:
    """Installed headers, else the tree tests.vm.kernels fetches into its cache."""
    installed = Path(f"/usr/src/linux-headers-{release}")
    if installed.is_dir():
        return installed
    from tests.vm.kernels import headers

    return headers(release)


def source_digest(source_dir: Path, release: str) -> str:
    """A hash of every file in `source_dir` (names and contents) and the release."""
    digest = hashlib.sha256(release.encode() + b"\0")
    for path in sorted(source_dir.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(source_dir)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def build_modules(
    source_dir: Path, *, release: str | None = None, cache: Path = CACHE
) -> dict[str, Path]:
    """Build every module of Kbuild directory `source_dir`: {module stem: .ko path}."""
    release = release or default_release()
    headers = headers_dir(release)
    if not headers.is_dir():
        raise BuildError(f"{headers} is missing; install linux-headers-{release}.")
    target = cache / source_digest(source_dir, release)
    if not target.is_dir():
        _build_into(source_dir, headers, target)
    return {path.name.removesuffix(".ko"): path for path in sorted(target.glob("*.ko"))}


def build_module(source_dir: Path, *, release: str | None = None) -> Path:
    """Build a directory holding exactly one module and return its .ko."""
    modules = build_modules(source_dir, release=release)
    if len(modules) != 1:
        raise BuildError(f"{source_dir} built {len(modules)} modules, expected exactly one.")
    return next(iter(modules.values()))


def _build_into(source_dir: Path, headers: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="livepatch-build-") as work:
        build = Path(work) / "src"
        shutil.copytree(source_dir, build)
        process = subprocess.run(
            ["make", "-C", str(headers), f"M={build}", "modules"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        built = sorted(build.glob("*.ko"))
        if process.returncode != 0 or not built:
            raise BuildError(
                f"Building {source_dir} against {headers} failed:\n"
                f"{process.stdout}\n{process.stderr}"
            )
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        for module in built:
            shutil.copy2(module, staging / module.name)
        try:
            staging.rename(target)
        except OSError:
            # Another build won the race; its result is identical.
            shutil.rmtree(staging)
