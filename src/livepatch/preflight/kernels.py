"""The kernel image for a kernel key: installed, or Debian's package fetched and cached.

A key such as ``6.1.0-56-amd64`` names the package ``linux-image-6.1.0-56-amd64``.
When ``/boot/vmlinuz-KEY`` and ``/lib/modules/KEY`` are installed they are used;
otherwise the package is downloaded with ``apt-get download`` and unpacked
under the cache (``~/.cache/livepatch/kernels/KEY``), built in a temporary
directory and renamed into place, so concurrent pre-flights never see half a
kernel. virtme-ng finds the modules beside the image (``lib/modules/KEY``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from livepatch.errors import LivepatchError

CACHE = Path.home() / ".cache" / "livepatch" / "kernels"
_KEY = re.compile(r"[0-9][0-9A-Za-z.+~-]{0,80}")
FETCH_TIMEOUT = 600


class KernelUnavailable(LivepatchError):
    code = "kernel-unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class KernelImage:
    key: str
    image: Path
    modules: Path


def package_name(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise KernelUnavailable(f"{key!r} is not a kernel key: use e.g. 6.1.0-56-amd64.")
    return f"linux-image-{key}"


def installed(key: str, root: Path = Path("/")) -> KernelImage | None:
    image, modules = root / f"boot/vmlinuz-{key}", root / f"lib/modules/{key}"
    return KernelImage(key, image, modules) if image.is_file() and modules.is_dir() else None


def cached(key: str, cache: Path = CACHE) -> KernelImage | None:
    return installed(key, cache / key)


def kernel_image(key: str, *, cache: Path = CACHE, fetch: bool = True) -> KernelImage:
    """The kernel for `key`; KernelUnavailable with the reason when there is none."""
    package = package_name(key)
    found = installed(key) or cached(key, cache)
    if found is not None:
        return found
    if not fetch:
        raise KernelUnavailable(f"Kernel {key} is not installed or cached; fetch {package}.")
    return _fetch(key, package, cache)


def _fetch(key: str, package: str, cache: Path) -> KernelImage:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".fetch-{key}-", dir=cache) as work:
        download = subprocess.run(
            ["apt-get", "download", package],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
            timeout=FETCH_TIMEOUT,
        )
        debs = sorted(Path(work).glob("*.deb"))
        if download.returncode != 0 or not debs:
            detail = (download.stderr.strip().splitlines() or ["no package downloaded"])[-1]
            raise KernelUnavailable(
                f"No kernel package {package} could be fetched ({detail}); check the kernel "
                "key, or run apt-get update if it is new."
            )
        tree = Path(work) / "tree"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tree)], check=True, timeout=300)
        if installed(key, tree) is None:
            raise KernelUnavailable(f"Package {package} holds no kernel image for {key}.")
        try:
            os.rename(tree, cache / key)
        except OSError:
            if cached(key, cache) is None:
                raise
            shutil.rmtree(tree, ignore_errors=True)  # another pre-flight won the race
    found = cached(key, cache)
    assert found is not None
    return found
