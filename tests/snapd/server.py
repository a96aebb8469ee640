"""The patch service as the snapd test machine's systemd runs it: a venv for the guest.

The guest is Debian 12 with Debian's python3.11 (no pip, no python3-venv), the same
interpreter as this host's /usr/bin/python3.11. The venv is made here with that
interpreter, for the path it has in the guest (/opt/livepatch-server): the
dependencies once (``~/.cache/livepatch/snapd-vm/service-deps-KEY``, keyed by the
interpreter, pyproject.toml and the versions this test suite runs with), then this
checkout's package on top, packed as one tar keyed by the sources as well. Only the
console scripts' shebangs name the venv's directory; they are written for
/opt/livepatch-server, so the guest unpacks the tar there and runs it as is. The byte
code is compiled here, since the unit's ProtectSystem=strict keeps /opt read-only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.snapd.image import cached, digest, run

REPO = Path(__file__).resolve().parents[2]
PYTHON = Path("/usr/bin/python3.11")
GUEST_VENV = Path("/opt/livepatch-server")
RECIPE = 1
"""Bump when what `deps` or `tarball` make changes."""


def _sources_digest() -> str:
    files = sorted(
        path
        for path in (REPO / "src/livepatch").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    return digest(REPO / "pyproject.toml", *files, *(str(p.relative_to(REPO)) for p in files))


def _pins(target: Path) -> Path:
    """The versions this suite runs with (this interpreter's environment), as constraints."""
    frozen = run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"])
    target.write_text(
        "".join(line + "\n" for line in frozen.splitlines() if "==" in line and "@" not in line)
    )
    return target


def deps() -> Path:
    """A venv (made at a cache path) with the service's dependencies installed."""
    if not PYTHON.exists():
        raise RuntimeError(f"{PYTHON} is missing: the guest's interpreter (Debian's python3.11).")
    version = run([str(PYTHON), "--version"]).strip()
    frozen = run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"])
    key = digest(version, REPO / "pyproject.toml", frozen, RECIPE)

    def build(staging: Path) -> None:
        venv = staging / "venv"
        run([str(PYTHON), "-m", "venv", str(venv)])
        constraints = _pins(staging / "constraints.txt")
        run(
            [str(venv / "bin/python"), "-m", "pip", "install", "-q", "-c", str(constraints),
             f"{_source_copy(staging)}[server]"],
            timeout=1800,
        )  # fmt: skip
        run([str(venv / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", "livepatch"])
        shutil.rmtree(staging / "source")

    return cached("service-deps", key, build) / "venv"


def tarball() -> Path:
    """CACHE/service-venv-KEY/livepatch-server.tar: the venv for /opt/livepatch-server."""
    base = deps()
    key = digest(base.parent.name, _sources_digest(), RECIPE)

    def build(staging: Path) -> None:
        venv = staging / GUEST_VENV.name
        run(["cp", "-a", str(base), str(venv)])
        source = _source_copy(staging)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps"]
        run([*pip, "--force-reinstall", str(source)], timeout=1800)
        shutil.rmtree(source)
        _relocate(venv, GUEST_VENV)
        run(["tar", "-C", str(staging), "-cf", str(staging / "livepatch-server.tar"), venv.name])
        shutil.rmtree(venv)

    return cached("service-venv", key, build) / "livepatch-server.tar"


def _source_copy(staging: Path) -> Path:
    """What pip builds the package from, copied (setuptools writes build/ and egg-info)."""
    source = staging / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return source


def _relocate(venv: Path, target: Path) -> None:
    """Write `target` where the venv names its own directory: shebangs and pyvenv.cfg."""
    old = f"#!{venv}/bin/python"
    for script in (venv / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        if script.name.startswith(("activate", "Activate")):
            script.unlink()
            continue
        data = script.read_bytes()
        if data.startswith(old.encode()):
            script.write_bytes(f"#!{target}/bin/python".encode() + data[len(old) :])
    config = venv / "pyvenv.cfg"
    config.write_text(
        "".join(
            line + "\n"
            for line in config.read_text().splitlines()
            if not line.startswith("command")  # names the build directory
        )
    )


def tls_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (the unit's credentials)."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return cert, key
