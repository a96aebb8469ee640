"""Build a tiny real kernel module (an ELF .ko) once per kernel tree, cached.

The cache lives under ``~/.cache/livepatch/modules/<digest>/``, named by the
kernel tree and the C source, so a warm run costs nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.vm.modules import headers_dir
from tests.vm.qemu import default_release

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "livepatch/modules"

SOURCE = """\
#include <linux/module.h>
#include <linux/init.h>

static int __init {name}_init(void)
{{
\tpr_info("{name}: loaded\\n");
\treturn 0;
}}

static void __exit {name}_exit(void) {{ }}

module_init({name}_init);
module_exit({name}_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("livepatch trust test module");
"""


def build_module(kernel_tree: Path | None = None, name: str = "lptrust") -> Path:
    """Path of ``<name>.ko`` built against ``kernel_tree`` (unsigned).

    The default tree is the headers of the kernel the VM tests boot (the newest
    installed image with headers), so a Debian point release changes nothing here.
    """
    if kernel_tree is None:
        kernel_tree = headers_dir(default_release())
    source = SOURCE.format(name=name)
    digest = hashlib.sha256(f"{kernel_tree.resolve()}\n{source}".encode()).hexdigest()[:16]
    directory = CACHE / digest
    module = directory / f"{name}.ko"
    if module.exists():
        return module
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if module.exists():
            return module
        work = directory / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / f"{name}.c").write_text(source)
        (work / "Makefile").write_text(f"obj-m := {name}.o\n")
        result = subprocess.run(
            ["make", "-C", str(kernel_tree), f"M={work}", "modules"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building {name}.ko failed:\n{result.stdout}\n{result.stderr}")
        os.replace(work / f"{name}.ko", module)
    return module
