"""A reusable harness for running code on a real Linux kernel in qemu.

Booting (``tests.vm.qemu``)::

    from tests.vm import run_in_vm, python_in_vm, VmError
    result = run_in_vm("cat /proc/cmdline", append=["module.sig_enforce=1"], timeout=120)
    result.returncode, result.output, result.duration

boots Debian's kernel (``default_release()``: the newest /boot/vmlinuz-*
whose headers are installed) with virtme-ng under TCG and runs the shell
command as root inside it, with the host's filesystem visible (9p). In the
guest /tmp, /etc, /var, /usr, /home, /opt and /lib are copy-on-write: to get
files out, pass ``rwdirs=[path]`` or print to stdout. ``python_in_vm(module,
*args)`` runs ``python -m module args`` from the repository with the venv's
interpreter. ``VmError`` is raised when the VM cannot be booted or the
command times out (the message carries the output so far); a non-zero exit
of the command itself is returned, not raised. The command travels on the
kernel command line, so it must stay short (``MAX_COMMAND``): pass data in
files (the host filesystem is visible) rather than in arguments. One VM at a time per caller:
the machines are 2-core.

Building (``tests.vm.modules``)::

    from tests.vm import build_modules, build_module
    modules = build_modules(Path("tests/kernel/modules/cmdline"))  # {"name": Path(.ko)}
    ko = build_module(source_dir)                                  # exactly one .ko

compiles every module of a Kbuild directory against
/usr/src/linux-headers-<release> in a temporary copy (never in the source
tree) and caches the .ko files under
``~/.cache/livepatch/modules/<sha256 of sources + release>/``; a second call
with the same inputs returns at once. ``BuildError`` carries make's output.

Results printed by guest scripts (``tests.vm.report``): ``emit(results)``
prints one ``LIVEPATCH-RESULTS <json>`` line; ``parse_results(output)``
finds it on the host side.
"""

from tests.vm.modules import BuildError, build_module, build_modules, headers_dir
from tests.vm.qemu import VmError, VmResult, default_release, python_in_vm, run_in_vm
from tests.vm.report import emit, parse_results

__all__ = [
    "BuildError",
    "VmError",
    "VmResult",
    "build_module",
    "build_modules",
    "default_release",
    "emit",
    "headers_dir",
    "parse_results",
    "python_in_vm",
    "run_in_vm",
]
