"""The snapd test machine's disk image, built once and cached by its inputs.

Layout under ``~/.cache/livepatch/snapd-vm/`` (every entry built in a temporary
directory and renamed into place, so concurrent builders never see half of one):

- ``rootfs-KEY/``: ``debootstrap`` of Debian 12 with systemd, snapd and AppArmor
  (the VM's root file system, also the source of the ``snapd`` snap's files);
- ``baseroot-KEY/``: a minbase tree with the libraries CPython's extension
  modules need: the local base named ``core24``;
- ``snaps-KEY/``: ``core24.snap`` (baseroot + pyenv's CPython 3.12 relocated to
  /usr, as core24 has it) and ``snapd.snap`` (Debian's snapd files, ``type:
  snapd``: snapd will not install a non-core based snap without it);
- ``image-KEY/disk.img``: the root file system (``mkfs.ext4 -d``) with the
  host's kernel modules and the agent, booted once at build time to install
  the two local snaps, then powered off. Test runs boot it through a qcow2
  overlay (``tests.snapd.machine``) and never write to it.

Why not Ubuntu's core24: no store and no Ubuntu archive on these machines; the
base only has to carry what the snap links to (``/usr/bin/python3.12``) and
the mount points snap-confine needs (shared/SNAPD.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path.home() / ".cache" / "livepatch" / "snapd-vm"
SUITE = "bookworm"
ROOTFS_PACKAGES = (
    "systemd,systemd-sysv,udev,dbus,apparmor,snapd,squashfs-tools,kmod,dbus-user-session,"
    "e2fsprogs,procps,iproute2,python3"
)
# CPython's extension modules (ssl, sqlite3, ctypes, lzma, bz2, zlib, readline, uuid) link these.
BASE_PACKAGES = "kmod,libsqlite3-0,libffi8,liblzma5,libbz2-1.0,zlib1g,libreadline8,libuuid1,libssl3"
PYTHON = Path("/root/.pyenv/versions/3.12.1")
SNAPS_RECIPE = 2
"""Bump when _base_tree or _snapd_tree change what they make (part of the snaps' key)."""
IMAGE_RECIPE = 1
"""Bump when _disk_tree or FIRST_BOOT change what they make (part of the image's key)."""
# Mount points snap-confine needs in a base (cmd/snap-confine/mount-support.c).
BASE_MOUNT_POINTS = [
    "snap",
    "var/snap",
    "var/lib/snapd",
    "usr/lib/snapd",
    "usr/src",
    "media",
    "mnt",
    "home",
    "root",
    "var/log",
    "var/tmp",
    "run",
    "tmp",
    "usr/lib/modules",
    "usr/lib/firmware",
    "dev",
    "proc",
    "sys",
    "writable",
    "var/lib/extrausers",
]


class ImageError(Exception):
    """A step of the image build failed; the message carries its output."""


def log(text: str) -> None:
    print(f"snapd-vm: {text}", flush=True)


def run(argv: Sequence[str], *, timeout: float = 1800, cwd: Path | None = None) -> str:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    if done.returncode != 0:
        raise ImageError(
            f"`{' '.join(argv)}` exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return done.stdout


def mirror() -> str:
    """The Debian package mirror this host's apt uses (deb822 or one-line format)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    classic = Path("/etc/apt/sources.list")
    if classic.exists():
        for line in classic.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and "security" not in fields[2]:
                return fields[1]
    raise ImageError(
        "No Debian package mirror is configured in /etc/apt: the snapd test machine's "
        "image is made with debootstrap from the mirror apt uses; configure one first."
    )


def kernel_release() -> str:
    from tests.vm import default_release

    return default_release()


def digest(*parts: object) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            hashed.update(part.read_bytes())  # a cached directory's name carries its key
        else:
            hashed.update(str(part).encode())
        hashed.update(b"\0")
    return hashed.hexdigest()[:16]


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{name}.lock").open("w") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        yield


def cached(name: str, key: str, build: object) -> Path:
    """CACHE/NAME-KEY, made by `build(staging)` in a temporary directory and renamed."""
    target = CACHE / f"{name}-{key}"
    if target.is_dir():
        return target
    with locked(name):
        if target.is_dir():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE))
        started = time.monotonic()
        try:
            build(staging)  # type: ignore[operator]
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        log(f"built {target.name} in {time.monotonic() - started:.0f} s")
        for old in CACHE.glob(f"{name}-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


def debootstrap(target: Path, *, variant: str | None, packages: str) -> None:
    argv = ["nice", "-n", "19", "debootstrap", f"--cache-dir={CACHE / 'debs'}"]
    argv += [f"--variant={variant}"] if variant else []
    argv += [f"--include={packages}", SUITE, str(target), mirror()]
    (CACHE / "debs").mkdir(parents=True, exist_ok=True)
    run(argv, timeout=3600)


def rootfs() -> Path:
    key = digest(SUITE, ROOTFS_PACKAGES, mirror())

    def build(staging: Path) -> None:
        debootstrap(staging / "tree", variant=None, packages=ROOTFS_PACKAGES)

    return cached("rootfs", key, build) / "tree"


def baseroot() -> Path:
    key = digest(SUITE, BASE_PACKAGES, mirror())

    def build(staging: Path) -> None:
        debootstrap(staging / "tree", variant="minbase", packages=BASE_PACKAGES)

    return cached("baseroot", key, build) / "tree"


def _pack(tree: Path, out: Path) -> Path:
    text = run(["nice", "-n", "19", "snap", "pack", str(tree), str(out)], timeout=1800)
    built = text.strip().split("built: ")[-1].strip()
    path = Path(built)
    return path if path.is_absolute() else out / path


def _base_tree(base: Path, tree: Path) -> None:
    """baseroot + pyenv's CPython 3.12 relocated to /usr, packed as a base named core24."""
    run(["cp", "-a", str(base), str(tree)])
    for junk in ("debootstrap", "var/cache/apt/archives"):
        shutil.rmtree(tree / junk, ignore_errors=True)
    for directory in ("dev", "run", "tmp", "proc", "sys"):
        shutil.rmtree(tree / directory, ignore_errors=True)
    for point in BASE_MOUNT_POINTS:
        (tree / point).mkdir(parents=True, exist_ok=True)
    (tree / "etc/resolv.conf").unlink(missing_ok=True)
    (tree / "etc/resolv.conf").write_text("")
    snapctl = tree / "usr/bin/snapctl"  # as in real core bases: hooks find snapctl on PATH
    snapctl.unlink(missing_ok=True)
    snapctl.symlink_to("../lib/snapd/snapctl")
    if not (PYTHON / "bin/python3.12").exists():
        raise ImageError(f"CPython 3.12 is missing at {PYTHON} (pyenv install 3.12.1).")
    shutil.copy2(PYTHON / "bin/python3.12", tree / "usr/bin/python3.12")
    (tree / "usr/bin/python3").unlink(missing_ok=True)
    (tree / "usr/bin/python3").symlink_to("python3.12")
    triplet = tree / "usr/lib/x86_64-linux-gnu"
    for library in (PYTHON / "lib").glob("libpython3.12.so*"):
        run(["cp", "-a", str(library), str(triplet / library.name)])
    # the compiled stdlib stays: the base is read-only, and without it every start of the
    # snap's Python compiles what it imports (minutes under TCG)
    ignore = shutil.ignore_patterns(
        "test", "tests", "idlelib", "tkinter", "turtle*", "site-packages", "*.opt-?.pyc"
    )
    shutil.copytree(PYTHON / "lib/python3.12", tree / "usr/lib/python3.12", ignore=ignore)
    (tree / "meta").mkdir()
    (tree / "meta/snap.yaml").write_text(
        "name: core24\ntype: base\nversion: '24-debian12-local'\n"
        "summary: Local stand-in for core24 (Debian 12 minbase + CPython 3.12)\n"
        "description: A Debian 12 minbase tree with CPython 3.12 at /usr/bin/python3.12,\n"
        "  packed as a base named core24 for tests (no store here).\ngrade: devel\n"
    )


def _snapd_tree(root: Path, tree: Path) -> None:
    """Debian's snapd files (from the VM's root file system) as the `snapd` snap."""
    for relative in (
        "usr/lib/snapd",
        "usr/bin/snap",
        "etc/apparmor.d/usr.lib.snapd.snap-confine.real",
    ):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        run(["cp", "-a", str(root / relative), str(tree / relative)])
    (tree / "usr/bin/snapctl").symlink_to("../lib/snapd/snapctl")
    units = tree / "lib/systemd/system"
    units.mkdir(parents=True)
    for unit in (root / "usr/lib/systemd/system").glob("snapd.*"):
        run(["cp", "-a", str(unit), str(units / unit.name)])
    version = ""
    for line in (root / "usr/lib/snapd/info").read_text().splitlines():
        if line.startswith("VERSION="):
            version = line.split("=", 1)[1]
    (tree / "meta").mkdir()
    (tree / "meta/snap.yaml").write_text(
        f"name: snapd\ntype: snapd\nversion: '{version}'\n"
        f"summary: snapd built from Debian's snapd {version}\n"
        "description: The files of Debian's snapd package, packed as the snapd snap.\n"
        "grade: devel\n"
    )


def local_snaps() -> Path:
    """CACHE/snaps-KEY with core24.snap and snapd.snap."""
    root, base = rootfs(), baseroot()
    key = digest(root, base, PYTHON / "bin/python3.12", SNAPS_RECIPE)

    def build(staging: Path) -> None:
        _base_tree(base, staging / "core24-tree")
        (staging / "core24-tree").rename(staging / "core24")
        _pack(staging / "core24", staging).rename(staging / "core24.snap")
        _snapd_tree(root, staging / "snapd")
        _pack(staging / "snapd", staging).rename(staging / "snapd.snap")
        shutil.rmtree(staging / "core24")
        shutil.rmtree(staging / "snapd")

    return cached("snaps", key, build)


AGENT_UNIT = """[Unit]
Description=livepatch test agent: runs the host's commands from the 9p share
After=local-fs.target systemd-udev-settle.service
[Service]
Type=simple
ExecStart=/usr/local/sbin/livepatch-test-agent
[Install]
WantedBy=multi-user.target
"""


def _disk_tree(root: Path, tree: Path, release: str) -> None:
    run(["cp", "-a", str(root), str(tree)])
    modules = Path("/lib/modules") / release
    if not (modules / "modules.dep").exists():
        raise ImageError(f"{modules} is missing; the VM boots the host's linux-image-{release}.")
    (tree / "usr/lib/modules").mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", str(modules), str(tree / "usr/lib/modules" / release)])
    shutil.rmtree(tree / "usr/lib/modules" / release / "build", ignore_errors=True)
    shutil.rmtree(tree / "usr/lib/modules" / release / "source", ignore_errors=True)
    (tree / "etc/hostname").write_text("snapdvm\n")
    (tree / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    run(["chroot", str(tree), "passwd", "-d", "root"])
    agent = tree / "usr/local/sbin/livepatch-test-agent"
    shutil.copy2(HERE / "agent.sh", agent)
    agent.chmod(0o755)
    unit = tree / "etc/systemd/system/livepatch-test-agent.service"
    unit.write_text(AGENT_UNIT)
    wants = tree / "etc/systemd/system/multi-user.target.wants/livepatch-test-agent.service"
    wants.symlink_to("/etc/systemd/system/livepatch-test-agent.service")
    # no time spent on what a test machine does not need
    for unit_name in (
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "man-db.timer",
        "e2scrub_all.timer",
    ):
        (tree / "etc/systemd/system" / unit_name).unlink(missing_ok=True)
        (tree / "etc/systemd/system" / unit_name).symlink_to("/dev/null")


FIRST_BOOT = """set -e
snap wait system seed.loaded
snap set system refresh.retain=2
snap install --dangerous /mnt/share/snaps/snapd.snap
until snap version >/dev/null 2>&1; do sleep 2; done
snap install --dangerous /mnt/share/snaps/core24.snap
snap list
chroot /snap/core24/current /usr/bin/python3.12 -c \
    'import ssl, sqlite3, ctypes; print("python", ssl.OPENSSL_VERSION)'
"""


def image() -> Path:
    """CACHE/image-KEY/disk.img: booted once to install snapd and core24, then left alone."""
    from tests.snapd.machine import Machine

    release = kernel_release()
    root, snaps = rootfs(), local_snaps()
    key = digest(root, snaps, release, IMAGE_RECIPE, HERE / "agent.sh")

    def build(staging: Path) -> None:
        tree = staging / "tree"
        _disk_tree(root, tree, release)
        disk = staging / "disk.img"
        run(
            [
                "nice",
                "-n",
                "19",
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "root",
                "-d",
                str(tree),
                str(disk),
                "8G",
            ]
        )
        shutil.rmtree(tree)
        share = staging / "share"
        (share / "snaps").mkdir(parents=True)
        for name in ("snapd.snap", "core24.snap"):
            os.link(snaps / name, share / "snaps" / name)
        with Machine.boot(disk, share, overlay=False) as machine:
            result = machine.run(FIRST_BOOT, timeout=1200)
            if result.returncode != 0:
                raise ImageError(f"installing the local snaps failed:\n{result.output}")
            log(f"first boot: {result.output.strip().splitlines()[-1]}")
            machine.poweroff()
        shutil.rmtree(share)

    return cached("image", key, build) / "disk.img"


if __name__ == "__main__":
    started = time.monotonic()
    print(image())
    log(f"image ready in {time.monotonic() - started:.0f} s")
