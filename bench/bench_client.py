"""Client benchmarks: `livepatch status` start-up, the daemon's memory and wake-ups, and
the apply overhead on a real kernel.

- Every fast path of `livepatch status`, `--help` and `config` next to `python -c pass` (the
  same interpreter) in the same hyperfine run, repeated (aim: at most 1.5x).
- The daemon's resident memory before and after a real check-in (the patch
  service over HTTPS on loopback: TUF refresh, download, signature check,
  load into a file-backed kernel, report), with check-ins in a forked child
  (what `livepatch daemon` does) and in-process; and its context switches
  over an idle minute after the check-in (aim: none beyond its timer).
  Aim: at most 30 MB.
- In a VM booted once: our apply (signature check + load + wait for the
  transition, through the production KernelAdapter) against the kernel's own
  time for the same module (finit_module + the transition, polled every
  millisecond), alternating, same boot (aim: at most 10% overhead).

Host side: `python -m bench client`. The daemon and the guest run
`python -m bench.bench_client daemon|guest-apply ...`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import livepatch
from bench.results import record
from livepatch.client import config, statuscache
from livepatch.client.paths import Paths
from livepatch.client.state import (
    CheckState,
    Credential,
    CredentialFile,
    Enrolment,
    State,
    StateFile,
)

VENV_BIN = Path(sys.executable).parent
IDLE_SECONDS = 60
APPLY_ROUNDS = 12
STATUS_RUNS = int(os.environ.get("BENCH_STATUS_RUNS", "100"))
STATUS_WARMUP = int(os.environ.get("BENCH_STATUS_WARMUP", "20"))
STATUS_REPEATS = int(os.environ.get("BENCH_STATUS_REPEATS", "3"))
STATUS_COMMAND = "BENCH_CLIENT_PARTS=status python -m bench client"
MODULE = "livepatch_cmdline_v2"


# -- livepatch status ----------------------------------------------------------------


def enrolled_state(root: Path) -> Paths:
    paths = Paths(root)
    paths.ensure()
    root.chmod(0o755)
    now = datetime.now(UTC)
    config.save(paths.config, config.Config(remote_server="https://127.0.0.1:9"))
    StateFile(paths.state).save(
        State(
            enrolment=Enrolment("bench-machine", "community", "https://127.0.0.1:9", now),
            kernel=os.uname().release,
            check_state=CheckState.CHECKED,
            last_check=now,
            next_check=now + timedelta(hours=2),
        )
    )
    CredentialFile(paths.credential).save(Credential("bench", now + timedelta(days=30), now))
    # As the daemon leaves it (`livepatch status` checks its lock): it has run, it is not
    # running now.
    paths.daemon_lock.write_text("1\n")
    paths.daemon_lock.chmod(0o644)
    return paths


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def compile_package() -> None:
    """Write the package's bytecode, as an install has it.

    pip compiles at install time and the snap's read-only squashfs holds the
    bytecode its build wrote. A source checkout with PYTHONDONTWRITEBYTECODE set
    (or run as a user who may not write __pycache__) has stale or no bytecode,
    and every run then compiles the modules it imports: about 15 ms of CPU on
    the status path, more than the whole start-up it is compared with.
    """
    package = Path(livepatch.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


Row = tuple[str, str, str, str]
"""(label, command, prepare, ceiling command); a ceiling's own is ""."""
CEILING_EVERY = 3
"""Measured rows between two runs of the ceilings, so that each row is compared with
ceilings measured seconds before and after it (other work on the machine drifts)."""


def status_rows(paths: Paths, none: Path) -> list[Row]:
    """The rows in the order they run: both ceilings first, after every CEILING_EVERY
    measured rows, and last."""
    cache = paths.root / statuscache.CACHE_NAME
    lp = str(VENV_BIN / "livepatch")
    fresh = f"LIVEPATCH_STATE_DIR={none}"
    lp_root = f"env LIVEPATCH_STATE_DIR={paths.root} {lp}"
    nocache = f"rm -f {cache}"
    ceiling = f"env {fresh} {sys.executable} -c pass"
    user_ceiling = " ".join([*NOBODY, sys.executable, "-c", "pass"])
    as_user = " ".join([*NOBODY, lp])
    # The cache as the daemon or root's full path (`--debug` skips the fast path) writes
    # it, kept aside: the rows before remove it, and restoring it is a copy.
    subprocess.run(
        [lp, "--debug", "status"],
        check=True,
        env=dict(os.environ, LIVEPATCH_STATE_DIR=str(paths.root)),
        stdout=subprocess.DEVNULL,
    )
    kept = paths.root.parent / "status-cache.kept"
    shutil.copy2(cache, kept)
    measured: list[Row] = [
        ("status, not enrolled (never enrolled)", f"env {fresh} {lp} status", "true", ceiling),
        (
            "status --format json, not enrolled",
            f"env {fresh} {lp} status --format json",
            "true",
            ceiling,
        ),
        ("status, enrolled, no cache", f"{lp_root} status", nocache, ceiling),
        (
            "status --format json, enrolled, no cache",
            f"{lp_root} status --format json",
            nocache,
            ceiling,
        ),
        (
            "status --format yaml, enrolled, no cache",
            f"{lp_root} status --format yaml",
            nocache,
            ceiling,
        ),
        (
            "status --format humane, enrolled, no cache",
            f"{lp_root} status --format humane",
            nocache,
            ceiling,
        ),
        ("status --verbose, enrolled, no cache", f"{lp_root} status --verbose", nocache, ceiling),
        (
            "status --format json, enrolled, cached",
            f"{lp_root} status --format json",
            f"cp -p {kept} {cache}",
            ceiling,
        ),
        ("status as a user, enrolled, no cache", f"{as_user} status", nocache, user_ceiling),
        (
            "status --format json as a user, enrolled, no cache",
            f"{as_user} status --format json",
            nocache,
            user_ceiling,
        ),
        ("--help", f"{lp_root} --help", "true", ceiling),
        ("config, as root", f"{lp_root} config", "true", ceiling),
        ("config, as a user", f"{as_user} config", "true", user_ceiling),
    ]
    ceilings: list[Row] = [
        (CEILING, ceiling, "true", ""),
        (USER_CEILING, user_ceiling, "true", ""),
    ]
    rows = list(ceilings)
    for start in range(0, len(measured), CEILING_EVERY):
        rows += [*measured[start : start + CEILING_EVERY], *ceilings]
    return rows


CEILING = "`python -c pass`, the same interpreter (ceiling)"
USER_CEILING = "`python -c pass` as a user (ceiling)"


def hyperfine_once(rows: list[Row], out: Path, state_dir: Path) -> list[dict[str, float]]:
    """One hyperfine run of every row: ms of CPU (user + system, mean) and of wall time
    (median) per row, in row order."""
    prepares = [option for row in rows for option in ("--prepare", row[2])]
    subprocess.run(
        [
            *("hyperfine", "--warmup", str(STATUS_WARMUP), "--runs", str(STATUS_RUNS), "-N"),
            *("-i", "--export-json", str(out), *prepares),
            *(row[1] for row in rows),
        ],
        check=True,
        env=dict(os.environ, LIVEPATCH_STATE_DIR=str(state_dir)),
        stdout=subprocess.DEVNULL,
    )
    return [
        {"cpu": (r["user"] + r["system"]) * 1000, "wall": r["median"] * 1000}
        for r in json.loads(out.read_text())["results"]
    ]


def ratios(rows: list[Row], figures: list[dict[str, float]]) -> list[dict[str, float] | None]:
    """Each measured row's figures over its ceiling's, the mean of the ceiling's runs just
    before and just after it; None for the ceilings themselves."""
    out: list[dict[str, float] | None] = []
    for index, row in enumerate(rows):
        if not row[3]:
            out.append(None)
            continue
        before = max(i for i in range(index) if rows[i][1] == row[3])
        after = min(i for i in range(index + 1, len(rows)) if rows[i][1] == row[3])
        out.append(
            {
                key: figures[index][key]
                / statistics.fmean((figures[before][key], figures[after][key]))
                for key in ("cpu", "wall")
            }
        )
    return out


def _joined(values: list[float], unit: str) -> str:
    """One figure per repeat: "10.9 / 11.2" (ms) or "1.12x / 1.10x" (ratios)."""
    if unit == "x":
        return " / ".join(f"{value:.2f}x" for value in values)
    return " / ".join(f"{value:.1f}" for value in values)


def status_speed(paths: Paths, none: Path) -> str:
    """Every fast path next to bare Python (the same interpreter), in one hyperfine run,
    repeated STATUS_REPEATS times.

    Rows as root compare with `python -c pass` as root, rows as a user with the
    same under setpriv (its exec counted on both sides).
    """
    compile_package()
    before = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    rows = status_rows(paths, none)
    runs = [
        hyperfine_once(rows, paths.root / "hyperfine.json", paths.root)
        for _ in range(STATUS_REPEATS)
    ]
    runs_ratios = [ratios(rows, figures) for figures in runs]
    lines = [
        f"hyperfine -N, {STATUS_RUNS} runs after {STATUS_WARMUP} warm-ups each, all rows in "
        f"one run, the whole run repeated {STATUS_REPEATS} times (figures below: each "
        "repeat, in order). The package's bytecode is compiled first, as an install has it "
        "(`compileall`; pip and the snap's build write it). The enrolled state directory "
        "holds what `livepatch enable` and the daemon leave (state, settings, credential, "
        "the daemon's lock file, not held); the root rows and their ceiling run under `env` "
        "(which sets another state directory for the not-enrolled rows), a user's rows and "
        'their ceiling under `setpriv` as nobody. "No cache" removes the status cache before '
        "each run (what a machine has before its daemon or root ever ran `livepatch status`, "
        f"or after any input changed). Both ceilings run first, after every {CEILING_EVERY} "
        "measured rows, and last; each row is compared with the mean of its ceiling's runs "
        "just before and after it. Aim: at most 1.5x the ceiling. Other work on the 2 shared "
        "cores moves wall time much more than the CPU time (user + system, mean) a command "
        "costs, so the CPU ratio is the figure the aim is judged by; the median wall time's "
        "ratio is shown beside it.",
        "",
        "| command | CPU ms (user+sys) | CPU / ceiling | median wall / ceiling |",
        "|---|---:|---:|---:|",
    ]
    for label in (CEILING, USER_CEILING):
        command = next(row[1] for row in rows if row[0] == label)
        used = [
            statistics.fmean(
                f["cpu"] for row, f in zip(rows, figures, strict=True) if row[1] == command
            )
            for figures in runs
        ]
        lines.append(f"| {label}, mean of its runs | {_joined(used, 'ms')} | ceiling | ceiling |")
    worst = {"cpu": [0.0] * STATUS_REPEATS, "wall": [0.0] * STATUS_REPEATS}
    for index, row in enumerate(rows):
        if not row[3]:
            continue
        measured = [r[index] for r in runs_ratios]
        cpu = [m["cpu"] for m in measured if m is not None]
        wall = [m["wall"] for m in measured if m is not None]
        worst["cpu"] = [max(a, b) for a, b in zip(worst["cpu"], cpu, strict=True)]
        worst["wall"] = [max(a, b) for a, b in zip(worst["wall"], wall, strict=True)]
        used = [figures[index]["cpu"] for figures in runs]
        lines.append(
            f"| {row[0]} | {_joined(used, 'ms')} | {_joined(cpu, 'x')} | {_joined(wall, 'x')} |"
        )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    spread = max(worst["cpu"]) - min(worst["cpu"])
    lines += [
        "",
        f"Worst CPU ratio of each repeat: {_joined(worst['cpu'], 'x')} (spread {spread:.2f}); "
        f"worst median wall ratio of each: {_joined(worst['wall'], 'x')}. Load average before "
        f"the runs: {before}; after: {load}.",
    ]
    return "\n".join(lines) + "\n"


# -- the daemon ------------------------------------------------------------------------


def _task_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_daemon(state: Path, kernel: Path, mode: str) -> None:
    """The daemon as `livepatch daemon` builds it, over a file-backed kernel."""
    from tests.integration.client.filekernel import FileKernel

    from livepatch.client.daemon import Daemon, default_bus
    from livepatch.client.wiring import default_runtime

    runtime = default_runtime({"LIVEPATCH_STATE_DIR": str(state)})
    runtime = replace(runtime, kernel=FileKernel(kernel, max_pause=0.0))
    daemon = Daemon(runtime, bus=default_bus(), motd=state / "motd", isolate=mode == "isolate")
    asyncio.run(daemon.run())


def _one_daemon(service: Any, base: Path, mode: str, idle: int) -> dict[str, Any]:
    from tests.integration.client.filekernel import KERNEL, FileKernel

    from livepatch.client import commands, control
    from livepatch.client.wiring import default_runtime

    state, kernel = base / mode / "state", base / mode / "kernel"
    rt = replace(default_runtime({"LIVEPATCH_STATE_DIR": str(state)}), kernel=FileKernel(kernel))
    commands.set_config(rt.paths, [f"remote-server={service.url}", f"ca-certs={service.ca}"])
    outcome = commands.enable(rt, service.token()).outcome  # applies the first patch inline
    assert outcome is not None and outcome.error is None, outcome
    states = StateFile(rt.paths.state)
    later = datetime.now(UTC) + timedelta(hours=1)
    states.save(replace(states.load(), next_check=later))  # no check-in at start-up
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_client", "daemon", str(state), str(kernel), mode],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not rt.paths.control.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.05)
        time.sleep(1.0)
        figures = {"idle_kb": _rss_kb(process.pid)}
        newer = service.publish(KERNEL, f"bench_{mode}_2")
        started = time.monotonic()
        answer = control.request(rt.paths.control, "refresh")
        figures["check_s"] = time.monotonic() - started
        assert answer["ok"], answer
        assert answer["status"]["Applied-Patches"] == [newer], answer
        time.sleep(1.0)
        figures["after_kb"] = _rss_kb(process.pid)
        if idle:
            before = _task_switches(process.pid)
            time.sleep(idle)
            figures["switches"] = _task_switches(process.pid) - before
    finally:
        process.terminate()
        process.wait(10)
    return figures


def daemon_figures(base: Path) -> str:
    from tests.integration.client.filekernel import KERNEL
    from tests.integration.client.service import PatchService

    service = PatchService(base / "service")
    service.start()
    try:
        service.publish(KERNEL, "bench_1")
        forked = _one_daemon(service, base, "isolate", IDLE_SECONDS)
        inline = _one_daemon(service, base, "in-process", 0)
    finally:
        service.stop()
    mb = 1024
    return (
        "`livepatch daemon` as wired in production (D-Bus service imported; no system bus "
        "here), kernel calls on a file-backed kernel; the check-in is a real one against "
        "`livepatch-server` over HTTPS on loopback: credential, TUF refresh, download, "
        "signature check, load, report.\n\n"
        "| check-ins run | RSS idle | RSS after a check-in | check-in wall time |\n"
        "|---|---|---|---|\n"
        f"| in a forked child (`livepatch daemon`) | {forked['idle_kb'] / mb:.1f} MB | "
        f"{forked['after_kb'] / mb:.1f} MB | {forked['check_s']:.2f} s |\n"
        f"| in the daemon process | {inline['idle_kb'] / mb:.1f} MB | "
        f"{inline['after_kb'] / mb:.1f} MB | {inline['check_s']:.2f} s |\n\n"
        f"Context switches of the forked-mode daemon (all threads) over {IDLE_SECONDS} s "
        f"idle after its check-in: {forked['switches']}.\n\n"
        "`livepatch daemon` (the snap's service) always runs check-ins in the forked child "
        "(`cli.cmd_daemon` passes `isolate=True`; see `client/isolation.py`), so after a "
        "check-in it stays at its idle size; the in-process row is what it would cost "
        "otherwise (requests, cryptography and tuf stay imported).\n"
    )


# -- apply overhead in a VM --------------------------------------------------------------


def _signed_module(work: Path) -> tuple[Path, Path]:
    """The sample cumulative livepatch, signed with a fresh module-signing key."""
    from tests.kernel.conftest import SAMPLE_MODULES
    from tests.vm import build_modules

    from livepatch.trust import certs
    from livepatch.trust.keys import KeyDirectory
    from livepatch.trust.modsig import sign_module

    keys = KeyDirectory(work / "keys")
    keys.init()
    key, cert = keys.current_signing()
    module = build_modules(SAMPLE_MODULES)[MODULE]
    signed = work / f"{MODULE}.ko"
    signed.write_bytes(sign_module(module.read_bytes(), key, cert))
    pem = work / "signing.pem"
    pem.write_bytes(certs.cert_pem(cert))
    return signed, pem


def guest_apply(module: Path, cert_pem: Path, rounds: int) -> None:
    """In the guest: time both ways of applying `module`, alternating; print results."""
    from cryptography import x509
    from tests.vm.report import emit

    from livepatch.client.kernelport import KernelAdapter
    from livepatch.kernel import LinuxModuleSyscalls, LivepatchDriver
    from livepatch.trust.modsig import verify_module

    name = MODULE
    transition = Path(f"/sys/kernel/livepatch/{name}/transition")
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    syscalls = LinuxModuleSyscalls()
    cleaner = LivepatchDriver()

    def kernel_own() -> float:
        started = time.perf_counter()
        fd = os.open(module, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.finit_module(fd, "", 0)
        finally:
            os.close(fd)
        while transition.read_text().strip() != "0":
            time.sleep(0.001)
        return time.perf_counter() - started

    def ours() -> float:
        adapter = KernelAdapter(Path("/"))  # what a check-in uses, built per apply
        started = time.perf_counter()
        verify_module(module.read_bytes(), [cert], now=datetime.now(UTC))
        verified = time.perf_counter()
        adapter.load(module)
        done = time.perf_counter()
        times["verify"].append(verified - started)
        times["load"].append(done - verified)
        return done - started

    def remove() -> None:
        try:
            cleaner.disable(name, timeout=60.0)
        except OSError:  # ENODEV: read while the kernel removed the patch's directory
            while Path(f"/sys/kernel/livepatch/{name}").exists():
                time.sleep(0.01)
        cleaner.unload(name)

    times: dict[str, list[float]] = {"kernel": [], "ours": [], "verify": [], "load": []}
    ours()  # warm the page cache and the imports once, untimed
    remove()
    for values in times.values():
        values.clear()
    for index in range(rounds):
        order = [("kernel", kernel_own), ("ours", ours)]
        for label, apply in order if index % 2 == 0 else reversed(order):
            times[label].append(apply())
            remove()
    emit({"apply": {"ok": True, "facts": times}})


def apply_overhead(work: Path) -> str:
    from tests.kernel.conftest import GuestRun
    from tests.vm import python_in_vm

    module, cert = _signed_module(work)
    run = GuestRun(
        python_in_vm(
            "bench.bench_client",
            "guest-apply",
            str(module),
            str(cert),
            str(APPLY_ROUNDS),
            timeout=400,
        )
    )
    times = run.facts("apply")
    medians = {key: statistics.median(times[key]) * 1000 for key in times}
    spread = {key: f"{min(times[key]) * 1000:.1f} to {max(times[key]) * 1000:.1f}" for key in times}
    return apply_text(work, module, cert, medians, spread)


def apply_text(
    work: Path, module: Path, cert: Path, medians: dict[str, float], spread: dict[str, str]
) -> str:
    """The section: the VM's figures (`medians`, `spread` in ms) and the native ones."""
    kernel, ours, verify, load = (medians[k] for k in ("kernel", "ours", "verify", "load"))
    digest = hashlib.sha256(module.read_bytes()).hexdigest()[:12]
    native = _native_verify_ms(module, cert)
    host = native_apply(work, module, cert)
    share_cpu, share_wall = 100 * host["cpu"] / kernel, 100 * host["wall"] / kernel
    return (
        f"Debian's kernel under qemu TCG (1 vCPU), the sample cumulative livepatch "
        f"`{MODULE}` signed with RSA-3072 (sha256 {digest}…), {APPLY_ROUNDS} rounds of each, "
        "alternating, disabled and unloaded in between, one boot. Kernel's own: finit_module, "
        "then `transition` polled every 1 ms until 0. Ours in the VM: read, verify the "
        "signature, KernelAdapter.load (capability checks, finit_module, wait for the "
        "transition, unload replaced patches).\n\n"
        "| apply | median | range |\n|---|---|---|\n"
        f"| kernel's own load + transition (VM) | {kernel:.1f} ms | {spread['kernel']} ms |\n"
        f"| ours in the VM: verify + load + wait | {ours:.1f} ms | {spread['ours']} ms |\n"
        f"| of which: signature check | {verify:.1f} ms | {spread['verify']} ms |\n"
        f"| of which: KernelAdapter.load | {load:.1f} ms | {spread['load']} ms |\n\n"
        "Our user-space work per apply, natively on the host (median of 30): a whole "
        "`CheckIn.run` that plans, checks the module's hash and signature (the production "
        "`verify_module`), stages the module, saves the state at each step (atomic, "
        "fsync'd), queues the report and sends it to an in-memory service; the kernel port's "
        "load returns at once.\n\n"
        "| native, per apply | median | share of the kernel's own part |\n|---|---|---|\n"
        f"| CPU time (user + system) | {host['cpu']:.2f} ms | {share_cpu:.1f}% |\n"
        f"| wall time | {host['wall']:.2f} ms | {share_wall:.1f}% |\n"
        f"| of which: waiting for {host['fsyncs']:.0f} fsyncs | {host['fsync']:.2f} ms | |\n"
        f"| the signature check alone (best of 50) | {native:.2f} ms | |\n\n"
        f"Aim (our native user-space time at most 10% of the kernel's part): CPU "
        f"{share_cpu:.1f}% (met when at most 10%); wall {share_wall:.1f}%, of which the "
        "fsyncs are the disk's time for the durable state an apply needs (the intent to load "
        "is on disk before finit_module; 2 per atomic write: planned state, staged module, "
        "intent, outcome, reports sent, each file and its directory). "
        + _vm_gap(kernel, ours, verify, native)
    )


def _vm_gap(kernel: float, ours: float, verify: float, native: float) -> str:
    """Where the VM figure's difference from the kernel's own goes."""
    tcg = (
        "TCG emulates every instruction of Python and OpenSSL, so the signature check that "
        f"takes {native:.2f} ms natively takes {verify:.1f} ms there"
    )
    if ours >= kernel:
        return (
            f"The VM's {ours - kernel:.1f} ms over the kernel's own: {tcg}; and "
            "KernelAdapter.load's extra is the capability checks (sysfs and /proc reads in "
            "emulated Python) and its transition poll every 10 ms "
            "(`LoadTimings.poll_interval`) against the bare loop's 1 ms.\n"
        )
    return (
        f"In this boot our VM median was {kernel - ours:.1f} ms below the kernel's own: the "
        "transition's length is the kernel's (tasks reach a safe point on their own or at "
        "its once-a-second retry), and it varies between rounds far more than our work "
        f"adds, which is small even there ({tcg}).\n"
    )


class _SignedSource:
    """A MetadataSource with one patch: the real module, its hash checked as TUF's
    download does, and its signature checked by the production `verify_module`."""

    def __init__(self, patch: Any, data: bytes, cert_pem: Path) -> None:
        from cryptography import x509

        self.patch, self.data = patch, data
        self.digest = hashlib.sha256(data).digest()
        self.certificates = [x509.load_pem_x509_certificate(cert_pem.read_bytes())]

    def refresh(self) -> None:
        """Metadata refresh is per check-in, not per apply: measured elsewhere."""

    def patches(self) -> list[Any]:
        return [self.patch]

    def download(self, patch: Any) -> bytes:
        if hashlib.sha256(self.data).digest() != self.digest:
            raise AssertionError("hash mismatch")
        return self.data

    def verify(self, patch: Any, data: bytes, now: datetime) -> None:
        from livepatch.trust.modsig import verify_module

        verify_module(data, self.certificates, now=now)


def native_apply(work: Path, module: Path, cert_pem: Path, rounds: int = 30) -> dict[str, float]:
    """Our user-space work for one apply, natively: a whole `CheckIn.run` that plans,
    verifies, stages the module, saves state (fsync) and queues and sends the report,
    with an in-memory kernel port whose load returns at once and an in-memory service."""
    from tests.unit.client.fakes import FakeKernel, FakeService, patch

    from livepatch.client.checkin import CheckIn, Runtime
    from livepatch.client.paths import Paths as ClientPaths

    data = module.read_bytes()
    timings: dict[str, list[float]] = {"wall": [], "cpu": [], "fsync": [], "fsyncs": []}
    real_fsync = os.fsync
    waited = [0.0, 0]

    def counted_fsync(fd: int) -> None:
        started = time.perf_counter()
        real_fsync(fd)
        waited[0] += time.perf_counter() - started
        waited[1] += 1

    for index in range(rounds + 1):
        paths = ClientPaths(work / f"native-{index}")
        paths.ensure()
        config.save(paths.config, config.Config(remote_server="https://127.0.0.1:9"))
        now = datetime.now(UTC)
        kernel = FakeKernel()
        info = patch(f"{index + 1}", kernel=kernel.key, module=MODULE)
        StateFile(paths.state).save(  # as the daemon leaves it: enrolled, reconciled
            State(
                enrolment=Enrolment("bench", "community", "https://127.0.0.1:9", now),
                kernel=kernel.key,
            )
        )
        CredentialFile(paths.credential).save(Credential("bench", now + timedelta(days=30), now))
        source = _SignedSource(info, data, cert_pem)
        runtime = Runtime(
            paths=paths,
            kernel=kernel,
            service=lambda _config: FakeService(),
            metadata=lambda *_args, source=source: source,
            clock=lambda: datetime.now(UTC),
        )
        waited[:] = [0.0, 0]
        os.fsync = counted_fsync
        try:
            started, cpu = time.perf_counter(), time.process_time()
            outcome = CheckIn(runtime).run()
            elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        finally:
            os.fsync = real_fsync
        assert outcome.applied is not None and outcome.error is None, outcome
        if index:  # the first warms imports and the page cache
            timings["wall"].append(elapsed * 1000)
            timings["cpu"].append(used * 1000)
            timings["fsync"].append(waited[0] * 1000)
            timings["fsyncs"].append(waited[1])
    return {key: statistics.median(values) for key, values in timings.items()}


def _native_verify_ms(module: Path, cert_pem: Path) -> float:
    from cryptography import x509

    from livepatch.trust.modsig import verify_module

    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    data = module.read_bytes()
    best = float("inf")
    for _ in range(50):
        started = time.perf_counter()
        verify_module(data, [cert], now=datetime.now(UTC))
        best = min(best, time.perf_counter() - started)
    return best * 1000


PARTS = os.environ.get("BENCH_CLIENT_PARTS", "status,daemon,apply").split(",")


def main() -> None:
    """Each part records its own section: `BENCH_CLIENT_PARTS=status python -m bench client`."""
    with tempfile.TemporaryDirectory(prefix="bench-client.") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # the status rows run as a user too
        if "status" in PARTS:
            none = base / "not-enrolled"
            none.mkdir(mode=0o755)
            body = status_speed(enrolled_state(base / "status"), none)
            print(body)
            record("client: livepatch status", STATUS_COMMAND, body)
        if "daemon" in PARTS:
            body = daemon_figures(base / "daemon")
            print(body)
            record(
                "client: daemon memory", "BENCH_CLIENT_PARTS=daemon python -m bench client", body
            )
        if "apply" in PARTS:
            body = apply_overhead(base / "apply")
            print(body)
            record(
                "client: apply overhead", "BENCH_CLIENT_PARTS=apply python -m bench client", body
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["daemon"]:
        run_daemon(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["guest-apply"]:
        guest_apply(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
