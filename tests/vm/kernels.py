"""A second Debian kernel for the multi-kernel suite: image and headers, fetched and cached.

The image comes through ``livepatch.preflight.kernels`` (the same cache the
pre-flight uses). The headers (``linux-headers-KEY`` and its ``-common``) are
unpacked under ``~/.cache/livepatch/headers/KEY``, their absolute include of
the common tree re-pointed there and their ``scripts``/``tools`` links led to
this machine's ``linux-kbuild-6.1``, built in a temporary directory and renamed into
place so concurrent runs never see half a tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from livepatch.preflight.kernels import KernelImage, kernel_image
from tests.vm.qemu import default_release

HEADERS_CACHE = Path.home() / ".cache" / "livepatch" / "headers"
KBUILD = Path("/usr/lib/linux-kbuild-6.1")


def second_release(release: str | None = None) -> str:
    """Another ABI of the installed kernel's flavour: 6.1.0-57-amd64 → 6.1.0-56-amd64."""
    release = release or default_release()
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-(\d+)-(.+)", release)
    if match is None:
        raise ValueError(f"cannot derive another ABI from {release!r}")
    base, abi, flavour = match.groups()
    return f"{base}-{int(abi) - 1}-{flavour}"


def second_kernel() -> KernelImage:
    return kernel_image(second_release())


def headers(release: str) -> Path:
    """The headers tree for `release`: installed, or fetched into the cache."""
    installed = Path(f"/usr/src/linux-headers-{release}")
    if installed.is_dir():
        return installed
    target = HEADERS_CACHE / release
    tree = target / f"usr/src/linux-headers-{release}"
    if tree.is_dir():
        return tree
    HEADERS_CACHE.mkdir(parents=True, exist_ok=True)
    abi = re.match(r"\d+\.\d+\.\d+-\d+", release)
    if abi is None:
        raise ValueError(f"cannot name the common headers of {release!r}")
    common = f"linux-headers-{abi.group()}-common"
    with tempfile.TemporaryDirectory(prefix=f".fetch-{release}-", dir=HEADERS_CACHE) as work:
        subprocess.run(
            ["apt-get", "download", f"linux-headers-{release}", common],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=600,
        )
        staging = Path(work) / "tree"
        for deb in sorted(Path(work).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        built = staging / f"usr/src/linux-headers-{release}"
        common_dir = target / f"usr/src/{common}"
        (built / "Makefile").write_text(f"include {common_dir}/Makefile\n")
        # scripts and tools link to ../../lib/linux-kbuild-6.1/…: this machine's kbuild
        kbuild = staging / "usr/lib" / KBUILD.name
        kbuild.parent.mkdir(parents=True, exist_ok=True)
        kbuild.symlink_to(KBUILD)
        try:
            staging.rename(target)
        except OSError:
            if not tree.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return tree
