"""Build (once) and cache a kernel that trusts a fixed test module-signing key.

The cache lives under ``~/.cache/livepatch/trusted-kernel/``:

- ``key/`` holds the test signing key, its certificate and the CA that issued
  it, generated once (0600) with our own ``livepatch.trust.certs``;
- ``<digest>/`` holds one build, named by a hash of the config options, the
  key and the kernel source version: ``bzImage``, the build tree (external
  modules are built against it) and a ``complete`` stamp written last.

Run ``python -m tests.kernel.trusted.kernel_build`` to build ahead of the tests.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from livepatch.trust import certs

SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
SOURCE_PACKAGE = "linux-source-6.1"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "livepatch/trusted-kernel"

# tinyconfig plus what module signature enforcement, livepatch, a serial
# console, an initramfs and `poweroff -f` need (see shared/TESTING.md).
ENABLE = (
    "64BIT",
    "PRINTK",
    "TTY",
    "SERIAL_8250",
    "SERIAL_8250_CONSOLE",
    "BLK_DEV_INITRD",
    "RD_GZIP",
    "PROC_FS",
    "SYSFS",
    "DEVTMPFS",
    "BINFMT_ELF",
    "BINFMT_SCRIPT",
    "MODULES",
    "MODULE_UNLOAD",
    "MODULE_SIG",
    "MODULE_SIG_FORCE",
    "MODULE_SIG_SHA256",
    "KALLSYMS",
    "KALLSYMS_ALL",
    "FTRACE",
    "FUNCTION_TRACER",
    "DYNAMIC_FTRACE",
    "LIVEPATCH",
    "SMP",
    "MULTIUSER",
    "FUTEX",
    "SHMEM",
    "TMPFS",
    "UNIX",
    "NET",
    "INET",
    "PCI",
    "UNWINDER_ORC",
    "ACPI",
)

# The other members of the unwinder choice, so that ORC (livepatch needs a
# reliable unwinder) is the one left.
DISABLE = ("UNWINDER_GUESS", "UNWINDER_FRAME_POINTER")


@dataclass(frozen=True)
class TestKey:
    """The fixed key the cached kernel trusts, with its certificate and CA."""

    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / "signing-key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "signing-cert.pem"

    @property
    def ca(self) -> Path:
        return self.directory / "ca-cert.pem"

    @property
    def kernel_pem(self) -> Path:
        """Key and certificate in one file, the form MODULE_SIG_KEY takes."""
        return self.directory / "kernel-signing.pem"


@dataclass(frozen=True)
class TrustedKernel:
    root: Path
    key: TestKey

    @property
    def bzimage(self) -> Path:
        return self.root / "bzImage"

    @property
    def build_tree(self) -> Path:
        return self.root / "linux"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)


def ensure_test_key(cache: Path = CACHE) -> TestKey:
    key = TestKey(cache / "key")
    if key.kernel_pem.exists():
        return key
    key.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    start = now - datetime.timedelta(days=1)
    ca_key = certs.generate_key("rsa", rsa_bits=certs.RSA_CA_BITS)
    ca = certs.create_ca(
        ca_key,
        common_name="livepatch test module-signing CA",
        organization="livepatch tests",
        validity=certs.Validity.starting(start, 3650),
    )
    signing_key = certs.generate_key("rsa", rsa_bits=2048)
    cert = certs.issue_signing_certificate(
        ca_key,
        ca,
        signing_key,
        common_name="livepatch test module signing",
        organization="livepatch tests",
        validity=certs.Validity.starting(start, 3650),
    )
    _write_private(key.key, certs.key_pem(signing_key))
    _write_private(key.cert, certs.cert_pem(cert))
    _write_private(key.ca, certs.cert_pem(ca))
    _write_private(key.kernel_pem, certs.key_pem(signing_key) + certs.cert_pem(cert))
    return key


def _source_version() -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def cache_digest(key: TestKey) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(ENABLE).encode())
    digest.update(key.kernel_pem.read_bytes())
    digest.update(_source_version().encode())
    return digest.hexdigest()[:16]


def _make(tree: Path, *targets: str, log: Path) -> None:
    with log.open("ab") as stream:
        subprocess.run(
            ["make", "-C", str(tree), "-j2", *targets],
            check=True,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )


def _configure(tree: Path, key: TestKey, log: Path) -> None:
    _make(tree, "tinyconfig", log=log)
    config = [str(tree / "scripts/config"), "--file", str(tree / ".config")]
    for option in ENABLE:
        config += ["--enable", option]
    for option in DISABLE:
        config += ["--disable", option]
    config += ["--set-str", "MODULE_SIG_KEY", str(key.kernel_pem)]
    config += ["--set-str", "SYSTEM_TRUSTED_KEYS", ""]
    subprocess.run(config, check=True)
    _make(tree, "olddefconfig", log=log)
    text = (tree / ".config").read_text()
    missing = [o for o in ENABLE if f"CONFIG_{o}=y\n" not in text]
    if missing:
        raise RuntimeError(f"kernel config dropped options {missing}; see {log}")


def build(kernel: TrustedKernel) -> None:
    log = kernel.root / "build.log"
    if kernel.build_tree.exists():
        shutil.rmtree(kernel.build_tree)
    with tarfile.open(SOURCE_TARBALL) as tar:
        top = tar.next()
        assert top is not None
        tar.extractall(kernel.root, filter="fully_trusted")
    (kernel.root / top.name.split("/")[0]).rename(kernel.build_tree)
    _configure(kernel.build_tree, kernel.key, log)
    _make(kernel.build_tree, "bzImage", "modules", log=log)
    shutil.copy2(kernel.build_tree / "arch/x86/boot/bzImage", kernel.bzimage)


def ensure_kernel(cache: Path = CACHE) -> TrustedKernel:
    """The cached trusted kernel, building it first if this cache has none (~7 min)."""
    key = ensure_test_key(cache)
    kernel = TrustedKernel(cache / cache_digest(key), key)
    stamp = kernel.root / "complete"
    if stamp.exists():
        return kernel
    kernel.root.mkdir(parents=True, exist_ok=True)
    with (kernel.root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            started = time.monotonic()
            build(kernel)
            stamp.write_text(f"built in {time.monotonic() - started:.0f} s\n")
    return kernel


if __name__ == "__main__":
    built = ensure_kernel()
    print(built.bzimage, (built.root / "complete").read_text().strip())
    sys.exit(0)
