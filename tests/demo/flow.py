"""The whole stream, step by step: shared by `make demo` and the end-to-end test.

`run(narrator, workdir)` performs every step in order, tells the narrator as
it goes and returns `Facts`, what each step observed, for the test to assert
on. Everything it starts is stopped in `finally` blocks, whatever fails.

The story, on Debian's kernel in qemu:

1. boot the VM (in the background: it takes a while under TCG) with two
   "secrets" on the kernel command line, which /proc/cmdline shows to
   every user: that is the vulnerability the fixes close;
2. build the client snap (`make snap`) and four livepatch modules for the
   VM's kernel (tests/demo/modules): fix 1, a cumulative fix 2, a faulty
   fix 3 and a fix 4 that misbehaves only on machines with a secret;
3. `livepatch-admin keys init` and a private CA for the service's TLS;
4. `livepatch-server serve` (SQLite, HTTPS), with a short rollout policy;
5. `livepatch-admin tokens create`;
6. `livepatch-admin publish` fix 1 with its CVE, then promote it to all
   (fixes 1 and 2 skip pre-flight, each would cost a VM boot);
7. in the VM: install the snap, start the system bus, dbus-monitor and the
   snap's daemon;
8. `livepatch enable TOKEN` (with a short health window) and
   `livepatch refresh`: the kernel is patched;
9. `livepatch status --verbose`, the PatchApplied signal, the motd;
10. a fleet of simulated machines enrols and catches up;
11. fix 2 rolls out canary → moderate → all as the engine sees healthy
    reports after each soak, and the VM picks it up (atomic replace);
12. the faulty fix 3 and a fix 4 are published side by side, each through
    pre-flight (Debian's kernel booted in qemu with a plain command line):
    the kernel refuses fix 3 (a symbol it lacks) and publish refuses it, in
    the kernel's own words; fix 4 passes and is published;
13. the VM, one of fix 4's canaries, applies it: reading /proc/cmdline
    trips the replacement's WARN on this command line, so the client's
    health check judges it unhealthy with the kernel's WARNING as evidence
    and reports that. The
    fleet's canaries replay exactly that report, read back from the
    service's database, and the engine halts fix 4 in canary; no other
    machine ever gets it. Every failure the engine acts on came from a real
    kernel;
14. everything is stopped; nothing is left running or listening.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livepatch.client.state import Report
from livepatch.rollout import BUCKETS, RolloutState, Stage, bucket
from livepatch.server.config import DATA_DIR_ENV
from tests.demo.client import Client, build_snap, snap_client, source_tree_client
from tests.demo.fleet import Fleet, Progress
from tests.demo.narrator import Narrator
from tests.demo.processes import RUN_VARIABLE, kill_marked, listening, marked
from tests.demo.service import Admin, RunningService, Tls, private_tls, running_service
from tests.demo.vm import HOST_FROM_GUEST, GuestError, GuestVm
from tests.vm import build_modules, default_release
from tests.vm.qemu import REPO

MODULES = Path(__file__).parent / "modules"
BUS_POLICY = REPO / "interfaces" / "io.livepatch.Livepatch1.conf"
STEPS = 14

SECRETS = {"demo.password": "hunter2", "demo.token": "s3cr3t-t0ken"}
"""Kernel command-line parameters every user can read in /proc/cmdline."""

# The service's rollout policy for the demo (config.toml): short soaks so that
# the engine promotes in seconds, and a sample small enough for the fleet.
CANARY_PERCENTAGE = 10.0
MODERATE_PERCENTAGE = 40.0
CANARY_SOAK_SECONDS = 8.0
MODERATE_SOAK_SECONDS = 5.0
MINIMUM_SAMPLE = 10
FLEET_SIZE = 200
HEALTH_WINDOW_SECONDS = 10
"""The VM's `health-window` (default 300 s): fix 4 is judged within the demo's time."""
FIX4_MINIMUM_APPLIED = 5
"""Fix 4's canary waits for this many healthy reports (publish --minimum-applied): it
cannot be promoted on soak time alone while the VM's verdict is still pending."""

INTERFACE = "io.livepatch.Livepatch1"
EXIT_GRACE = 3.0
GUEST_RUN = Path("/run/livepatch-demo")
MOTD_FRAGMENT = Path("/run/livepatch/motd")


@dataclass(frozen=True)
class PatchSpec:
    label: str
    module: str
    cves: tuple[str, ...]
    severity: str
    description: str


FIX1 = PatchSpec(
    "fix 1",
    "livepatch_demo_fix1",
    ("CVE-2099-10001",),
    "high",
    "/proc/cmdline shows demo.password= to every user (demo)",
)
FIX2 = PatchSpec(
    "fix 2",
    "livepatch_demo_fix2",
    ("CVE-2099-10001", "CVE-2099-10002"),
    "high",
    "/proc/cmdline shows demo.password= and demo.token= to every user (demo)",
)
FAULTY = PatchSpec(
    "fix 3",
    "livepatch_demo_faulty",
    ("CVE-2099-10001", "CVE-2099-10002", "CVE-2099-10003"),
    "medium",
    "fix 2 plus a hardening of a function this kernel lacks: a faulty build (demo)",
)
FIX4 = PatchSpec(
    "fix 4",
    "livepatch_demo_fix4",
    ("CVE-2099-10001", "CVE-2099-10002", "CVE-2099-10004"),
    "medium",
    "fix 2 plus an audit of secrets shown by /proc/cmdline (demo)",
)


@dataclass
class Facts:
    """What the run observed; the end-to-end test asserts on these."""

    run_id: str
    kernel: str = ""
    client: str = ""
    patch_ids: dict[str, str] = field(default_factory=dict)
    vm_machine_id: str = ""
    vm_boot_seconds: float = 0.0
    cmdline: dict[str, dict[str, str]] = field(default_factory=dict)
    """demo.* parameters as /proc/cmdline shows them: before, fix1, fix2, fix4."""
    enable: str = ""
    refresh: str = ""
    status_verbose: str = ""
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`livepatch status --format json` after fix1, fix2 and fix4 (judged)."""
    signals: list[tuple[str, list[str]]] = field(default_factory=list)
    """(member, arguments) of every io.livepatch.Livepatch1 signal on the VM's system bus."""
    motd_fragment: str = ""
    motd: str = ""
    loaded: dict[str, list[str]] = field(default_factory=dict)
    """Directories in /sys/kernel/livepatch after fix1, fix2 and fix4."""
    preflight_refusal: str = ""
    """What `livepatch-admin publish` of the faulty fix 3 said when pre-flight refused it."""
    published: dict[str, Any] = field(default_factory=dict)
    """`publish --format json` of each published fix, by label."""
    vm_fix2_health: str = ""
    """The VM's health verdict on fix 2, as the service stored it."""
    vm_report: Report | None = None
    """Fix 4's outcome as the VM reported it, read back from the service's database."""
    replayed: Report | None = None
    """The report the fleet's canaries sent for fix 4."""
    vm_dmesg: str = ""
    """The VM's kernel log lines naming fix 4's module, and its WARNING lines."""
    fleet_reports: dict[str, Report | None] = field(default_factory=dict)
    """Fix 4's report of each fleet machine that acted, read back from the service."""
    fleet_enrolled: int = 0
    fleet: dict[str, Progress] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)
    """`livepatch-admin patches show --format json` of fix 2 and fix 4 at the end."""
    ports: list[int] = field(default_factory=list)
    left_running: list[tuple[int, str]] = field(default_factory=list)
    left_listening: list[int] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)
    total_seconds: float = 0.0
    dashboard: str = ""
    """The dashboard's URL and where the admin key was written."""


@dataclass
class Demo:
    narrator: Narrator
    workdir: Path
    client: Client
    facts: Facts
    kernel: str
    modules: dict[str, Path] = field(default_factory=dict)
    admin: Admin | None = None
    tls: Tls | None = None
    service: RunningService | None = None
    vm: GuestVm | None = None
    fleet: Fleet | None = None
    token: str = ""
    fleet_token: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {RUN_VARIABLE: self.facts.run_id}

    # -- helpers -----------------------------------------------------------------

    def host(self, *argv: str) -> str:
        """Run `livepatch-admin ARGV`, narrating it; its stdout."""
        assert self.admin is not None
        self.narrator.command("$", ["livepatch-admin", *argv])
        return self.admin.run(*argv)

    def host_json(self, *argv: str) -> Any:
        return json.loads(self.host(*argv, "--format", "json"))

    def guest(self, *args: str, show: bool = True, check: bool = True) -> str:
        """Run the client's `livepatch ARGS` in the VM as root, narrating it."""
        assert self.vm is not None
        argv = self.client.livepatch(*args)
        shown = ["livepatch", *(_mask(arg) for arg in args)]
        self.narrator.command("vm#", shown)
        result = self.vm.run(argv, env=self.client.env, timeout=300)
        text = result.stdout + result.stderr
        if show:
            self.narrator.output(text)
        if check:
            result.check()
        return text

    def cmdline(self) -> dict[str, str]:
        assert self.vm is not None
        text = self.vm.run(["cat", "/proc/cmdline"]).check().stdout
        return {
            key: value
            for key, _, value in (item.partition("=") for item in text.split())
            if key in SECRETS
        }

    def loaded(self) -> list[str]:
        assert self.vm is not None
        return self.vm.run(["ls", "/sys/kernel/livepatch"]).check().stdout.split()

    def signals(self) -> list[tuple[str, list[str]]]:
        """Our D-Bus signals dbus-monitor has seen so far (kept in the facts)."""
        assert self.vm is not None
        text = self.vm.run(["cat", str(GUEST_RUN / "signals.txt")]).check().stdout
        self.facts.signals = parse_signals(text)
        return self.facts.signals

    def status_json(self) -> dict[str, Any]:
        assert self.vm is not None
        result = self.vm.run(
            self.client.livepatch("status", "--format", "json"), env=self.client.env
        ).check()
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def publish(self, spec: PatchSpec, *options: str) -> str:
        module = self.modules[spec.module]
        info = self.host_json(
            "publish",
            *options,
            str(module.relative_to(self.workdir)),
            "--kernel",
            self.kernel,
            "--cve",
            *spec.cves,
            "--severity",
            spec.severity,
            "--description",
            spec.description,
        )
        patch_id = str(info["patch_id"])
        expected = predicted_patch_id(self.kernel, spec)
        if patch_id != expected:
            raise RuntimeError(
                f"The service named {spec.label} {patch_id}, not {expected}; update "
                "predicted_patch_id in tests/demo/flow.py to its numbering."
            )
        self.facts.patch_ids[spec.label] = patch_id
        self.facts.published[spec.label] = info
        rollout = info["rollout"]
        self.narrator.say(
            f"published {patch_id} ({module.name}, {', '.join(spec.cves)}): "
            f"{rollout['stage']} {rollout['percentage']:g}%"
        )
        return patch_id


def _mask(argument: str) -> str:
    """Tokens are secrets: show only their start."""
    return argument[:6] + "…" if len(argument) > 24 and "=" not in argument else argument


def predicted_patch_id(kernel: str, spec: PatchSpec) -> str:
    """Patch ids are lp-<kernel>-<version>, versions counting up per kernel; the faulty
    fix 3 never gets one (pre-flight refuses it before the service numbers it)."""
    number = {FIX1.module: 1, FIX2.module: 2, FIX4.module: 3}[spec.module]
    return f"lp-{kernel}-{number}"


def canary_machine_id(patch_id: str) -> str:
    """A stable machine id in `patch_id`'s canary group."""
    canaries = round(CANARY_PERCENTAGE * BUCKETS / 100)
    for number in range(100_000):
        candidate = hashlib.sha256(f"livepatch-demo-vm-{number}".encode()).hexdigest()[:32]
        if bucket(candidate, patch_id) < canaries:
            return candidate
    raise RuntimeError("no machine id falls in the canary group")  # pragma: no cover


def stage_text(state: RolloutState) -> str:
    text = f"{state.stage.value} {state.percentage:g}%"
    return text + " HALTED" if state.halted else text


def policy_toml() -> str:
    return (
        "# Demo policy: promote after seconds, not days.\n"
        "[server]\n"
        "engine_interval_seconds = 1\n"
        "[rollout]\n"
        f"canary_percentage = {CANARY_PERCENTAGE}\n"
        f"moderate_percentage = {MODERATE_PERCENTAGE}\n"
        f"canary_soak_hours = {CANARY_SOAK_SECONDS / 3600!r}\n"
        f"moderate_soak_hours = {MODERATE_SOAK_SECONDS / 3600!r}\n"
        f"minimum_sample = {MINIMUM_SAMPLE}\n"
        # The simulated fleet reports loads but no health verdict: fixes 1 and 2 promote
        # without one (fix 4 is published with --minimum-applied).
        "minimum_applied = 0\n"
        "[limits]\n"
        "# The whole simulated fleet enrols and reports from this one address.\n"
        "enrol_per_address = {per_second = 1000.0, burst = 1000}\n"
        "report_per_address = {per_second = 1000.0, burst = 1000}\n"
        "# Its token's machines report in seconds what a real fleet reports in hours.\n"
        "report_per_token_slot = {per_second = 1000.0, burst = 1000}\n"
    )


def parse_signals(text: str) -> list[tuple[str, list[str]]]:
    """(member, string arguments) of each of our signals in dbus-monitor's output."""
    signals: list[tuple[str, list[str]]] = []
    ours = False
    for line in text.splitlines():
        header = re.match(r"signal .*interface=([\w.]+); member=(\w+)", line)
        if header:
            ours = header.group(1) == INTERFACE
            if ours:
                signals.append((header.group(2), []))
            continue
        value = re.match(r'\s+string "(.*)"$', line)
        if value and ours:
            signals[-1][1].append(value.group(1))
    return signals


# -- the steps -------------------------------------------------------------------

WITHOUT_SNAPD = (
    "(the VM runs the snap's files without snapd: booting the real snapd and installing "
    "the snap with its plugs take about 9 min under TCG, over the demo's 5-minute budget; "
    "make snapd-check runs the real one)"
)


def build_client(demo: Demo) -> Client:
    snap, said = build_snap()
    demo.narrator.say(f"$ make snap   # {snap.relative_to(REPO)}")
    if said:
        demo.narrator.say(said)
    demo.narrator.say(WITHOUT_SNAPD)
    return snap_client(snap)


def build(demo: Demo) -> None:
    built = build_modules(MODULES, release=demo.kernel)
    directory = demo.workdir / "patches"
    directory.mkdir()
    for spec in (FIX1, FIX2, FAULTY, FIX4):
        module = directory / built[spec.module].name
        shutil.copyfile(built[spec.module], module)
        demo.modules[spec.module] = module
        demo.narrator.say(f"{spec.label}: patches/{module.name}: {spec.description}")


def boot(demo: Demo, stack: contextlib.ExitStack) -> None:
    append = [f"{key}={value}" for key, value in SECRETS.items()]
    demo.narrator.say(
        f"its command line carries {' '.join(append)}, and /proc/cmdline shows it "
        "to every user: the vulnerability the fixes close"
    )
    demo.vm = stack.enter_context(GuestVm(append=append, env=demo.env))
    demo.narrator.say("it boots in the background (TCG, no KVM here) while the service is set up")


def keys(demo: Demo) -> None:
    demo.admin = admin = Admin(demo.workdir, demo.env)
    demo.narrator.say(f"$ export {DATA_DIR_ENV}={admin.data_dir}   # the service's state")
    demo.narrator.say(demo.host("keys", "init").strip())
    demo.tls = private_tls(demo.workdir / "tls", ["127.0.0.1", HOST_FROM_GUEST])
    demo.narrator.say(
        f"private TLS CA {demo.tls.ca.name}; server certificate for 127.0.0.1, "
        f"{HOST_FROM_GUEST} (the host as the VM sees it)"
    )
    (admin.data_dir / "config.toml").write_text(policy_toml())
    demo.narrator.say(
        f"rollout policy: canary {CANARY_PERCENTAGE:g}% for {CANARY_SOAK_SECONDS:g} s, "
        f"moderate {MODERATE_PERCENTAGE:g}% for {MODERATE_SOAK_SECONDS:g} s, then all; "
        f"halt above 2% failures once {MINIMUM_SAMPLE} machines reported"
    )


def serve(demo: Demo, stack: contextlib.ExitStack) -> None:
    assert demo.admin is not None and demo.tls is not None
    demo.service = stack.enter_context(running_service(demo.admin, demo.tls))
    demo.narrator.command("$", ["livepatch-server", *demo.service.argv[1:]])
    demo.facts.ports.append(demo.service.port)
    demo.narrator.say(f"serving {demo.service.url} (SQLite, HTTPS); /healthz answers")


def tokens(demo: Demo) -> None:
    created = demo.host_json("tokens", "create")
    demo.token = str(created["token"])
    demo.narrator.say(
        f"token {created['id']} ({created['tier']}, {created['machine_limit']} machines)"
    )
    fleet = demo.host_json("tokens", "create", "--machines", str(FLEET_SIZE))
    demo.fleet_token = str(fleet["token"])
    demo.narrator.say(f"token {fleet['id']} for the fleet ({fleet['machine_limit']} machines)")


def publish_fix1(demo: Demo) -> None:
    demo.narrator.say(
        "fixes 1 and 2 are published with --no-preflight (a pre-flight boots a VM: "
        "about 30 s each under TCG); fixes 3 and 4 go through it"
    )
    patch_id = demo.publish(FIX1, "--no-preflight")
    demo.narrator.say("an urgent fix: the administrator sends it to every machine at once")
    info = demo.host_json("patches", "promote", patch_id, "--to", "all")
    demo.narrator.say(f"{patch_id}: {info['rollout']['stage']} {info['rollout']['percentage']:g}%")


def start_guest(demo: Demo) -> None:
    vm = demo.vm
    assert vm is not None
    demo.facts.ports.append(vm.port)
    waited = demo.narrator.elapsed()
    seconds = demo.facts.vm_boot_seconds = vm.wait_ready()
    demo.narrator.say(
        f"the VM runs {vm.release}: its agent connected {seconds:.0f} s after the boot began "
        f"(waited {demo.narrator.elapsed() - waited:.0f} s for it)"
    )
    machine_id = canary_machine_id(predicted_patch_id(demo.kernel, FIX4))
    demo.facts.vm_machine_id = machine_id
    vm.write(Path("/etc/machine-id"), machine_id + "\n")
    demo.narrator.say(f"machine id {machine_id}")
    install_client(demo)
    vm.sh(
        f"mkdir -p /run/dbus /etc/dbus-1/system.d {GUEST_RUN} && "
        f"cp {shlex.quote(str(BUS_POLICY))} /etc/dbus-1/system.d/"
    ).check()
    vm.spawn(
        "dbus-daemon",
        ["/usr/bin/dbus-daemon", "--system", "--nofork", "--nopidfile"],
        output=GUEST_RUN / "dbus-daemon.log",
    )
    wait_for_socket(vm, Path("/run/dbus/system_bus_socket"))
    demo.narrator.say("system bus up, with the livepatch bus policy installed")
    match = f"type='signal',interface='{INTERFACE}'"
    vm.spawn(
        "dbus-monitor",
        ["/usr/bin/dbus-monitor", "--system", match],
        output=GUEST_RUN / "signals.txt",
    )
    demo.narrator.say(f'dbus-monitor --system "{match}"')
    vm.spawn("daemon", demo.client.daemon, output=GUEST_RUN / "daemon.log", env=demo.client.env)
    wait_for_socket(vm, demo.client.state_dir / "control.sock", timeout=240)
    demo.narrator.say(f"{shlex.join(['livepatch', *demo.client.daemon[1:]])}: running")


def install_client(demo: Demo) -> None:
    vm, client = demo.vm, demo.client
    assert vm is not None
    if client.setup:
        vm.sh(client.setup).check()
        demo.narrator.say(f"installed {client.description}: {client.env.get('SNAP', '')}")
    if client.install_hook:
        env = {**client.env, **client.hook_env}
        vm.run(client.install_hook, env=env, timeout=300).check()
        demo.narrator.say(f"ran its install hook ({client.install_hook[0]})")


def wait_for_socket(vm: GuestVm, path: Path, timeout: int = 60) -> None:
    tries = timeout * 5
    script = (
        f"for i in $(seq {tries}); do [ -S {shlex.quote(str(path))} ] && exit 0; "
        "sleep 0.2; done; exit 1"
    )
    if vm.sh(script, timeout=timeout + 10).returncode != 0:
        logs = vm.sh(f"tail -n 30 {GUEST_RUN}/*.log").stdout
        raise GuestError(f"{path} did not appear in the VM within {timeout} s.\n{logs}")


def enable(demo: Demo) -> None:
    assert demo.service is not None and demo.tls is not None
    before = demo.cmdline()
    demo.facts.cmdline["before"] = before
    demo.narrator.say(f"/proc/cmdline before: {_params(before)}")
    url = f"https://{HOST_FROM_GUEST}:{demo.service.port}"
    demo.guest("config", f"remote-server={url}", f"ca-certs={demo.tls.ca}", show=False)
    demo.guest("config", f"health-window={HEALTH_WINDOW_SECONDS}")
    demo.facts.enable = demo.guest("enable", demo.token)
    demo.facts.refresh = demo.guest("refresh")
    after = demo.cmdline()
    demo.facts.cmdline["fix1"] = after
    demo.facts.loaded["fix1"] = demo.loaded()
    demo.narrator.say(f"/proc/cmdline after:  {_params(after)}")
    demo.narrator.say(f"/sys/kernel/livepatch: {' '.join(demo.facts.loaded['fix1'])}")


def _params(params: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def report(demo: Demo) -> None:
    vm = demo.vm
    assert vm is not None
    demo.facts.status_verbose = demo.guest("status", "--verbose")
    demo.facts.status["fix1"] = demo.status_json()
    signals = demo.signals()
    demo.narrator.say("D-Bus signals seen by dbus-monitor on the system bus:")
    for member, args in signals:
        demo.narrator.say(f"  {INTERFACE}.{member} {' '.join(args)}")
    demo.facts.motd_fragment = vm.run(["cat", str(MOTD_FRAGMENT)]).check().stdout
    motd = vm.run(["sh", str(demo.client.motd_script)], env=demo.client.env).check().stdout
    demo.facts.motd = motd
    demo.narrator.say(f"login message ({demo.client.motd_script.name}):")
    demo.narrator.output(motd.strip("\n"))


def enrol_fleet(demo: Demo, stack: contextlib.ExitStack) -> None:
    assert demo.service is not None and demo.tls is not None
    fleet = Fleet(demo.service.url, demo.tls.ca, demo.kernel, demo.workdir / "fleet")
    fleet.enrol(demo.fleet_token, FLEET_SIZE)
    demo.fleet = fleet
    stack.callback(fleet.close)
    demo.facts.fleet_enrolled = len(fleet.machines)
    _, actions = fleet.round()
    applied = sum(1 for action in actions if action.result == "applied")
    demo.narrator.say(
        f"{len(fleet.machines)} simulated machines enrolled over HTTPS; "
        f"{applied} applied {demo.facts.patch_ids[FIX1.label]} on their first check-in"
    )


def _narrate_rollout(demo: Demo) -> Any:
    def changed(elapsed: float, state: RolloutState, progress: Progress) -> None:
        applied = sum(1 for a in progress.actions if a.result == "applied")
        failed = sum(1 for a in progress.actions if a.result == "failed")
        unhealthy = f", {progress.unhealthy()} of them unhealthy" if progress.unhealthy() else ""
        demo.narrator.say(
            f"+{elapsed:4.1f} s  {stage_text(state):<18} so far {applied} applied{unhealthy}, "
            f"{failed} failed"
        )

    return changed


def roll_out_fix2(demo: Demo) -> None:
    fleet = demo.fleet
    assert fleet is not None
    patch_id = demo.publish(FIX2, "--no-preflight")
    progress = fleet.follow(
        patch_id,
        done=lambda state: state.stage is Stage.ALL,
        timeout=CANARY_SOAK_SECONDS + MODERATE_SOAK_SECONDS + 60,
        on_change=_narrate_rollout(demo),
    )
    demo.facts.fleet[FIX2.label] = progress
    for stage in (Stage.CANARY, Stage.MODERATE, Stage.ALL):
        demo.narrator.say(
            f"{stage.value:>8}: {progress.count(stage, 'applied')} machines applied it, "
            f"{progress.count(stage, 'failed')} failed"
        )
    # The VM is one machine of the fleet now that the patch reached everyone.
    demo.guest("refresh")
    demo.facts.cmdline["fix2"] = after = demo.cmdline()
    demo.facts.loaded["fix2"] = demo.loaded()
    demo.facts.status["fix2"] = demo.status_json()
    demo.narrator.say(f"/proc/cmdline now:    {_params(after)}")
    loaded = " ".join(demo.facts.loaded["fix2"])
    demo.narrator.say(f"/sys/kernel/livepatch: {loaded} (replaced fix 1)")


def publish_argv(demo: Demo, spec: PatchSpec, *options: str) -> list[str]:
    module = demo.modules[spec.module]
    return [
        "publish",
        *options,
        str(module.relative_to(demo.workdir)),
        "--kernel",
        demo.kernel,
        "--cve",
        *spec.cves,
        "--severity",
        spec.severity,
        "--description",
        spec.description,
    ]


def preflight_both(demo: Demo) -> None:
    """Publish fix 3 and fix 4 side by side, pre-flight on: fix 3 is refused, 4 published.

    Each pre-flight boots its own VM (about 30 s under TCG); they run at once.
    """
    assert demo.admin is not None
    demo.narrator.say(
        f"publish runs pre-flight first: Debian's kernel {demo.kernel} boots in qemu with a "
        "plain command line (no demo.*) and the client's own code loads the module there; "
        "fix 3 and fix 4 are published at once, their pre-flight VMs side by side"
    )
    argv = publish_argv(demo, FAULTY)
    demo.narrator.command("$", ["livepatch-admin", *argv])
    demo.narrator.say("(in the background; meanwhile:)")
    faulty = demo.admin.start(*argv)
    try:
        # The VM must have judged fix 2 before fix 4 appears, or its daemon's own
        # check-in at the end of that window could take fix 4 before the demo does.
        fix2 = vm_verdict(
            demo, demo.facts.patch_ids[FIX2.label], timeout=HEALTH_WINDOW_SECONDS + 90
        )
        demo.facts.vm_fix2_health = fix2.health or ""
        demo.publish(FIX4, "--minimum-applied", str(FIX4_MINIMUM_APPLIED))
    finally:
        out, err = faulty.communicate()
    preflight = demo.facts.published[FIX4.label]["preflight"]
    demo.narrator.say(
        f"fix 4: pre-flight {preflight['result']} on {preflight['kernel']}; its canary "
        f"stage waits for {FIX4_MINIMUM_APPLIED} healthy reports, whatever its soak"
    )
    if faulty.returncode == 0:
        raise RuntimeError(f"Pre-flight let the faulty {FAULTY.label} through: {out.strip()}")
    demo.facts.preflight_refusal = refusal = err.strip()
    demo.narrator.say("fix 3:")
    demo.narrator.output(refusal)
    demo.narrator.say("fix 3 was never published: no machine will ever see it")


def vm_verdict(demo: Demo, patch_id: str, timeout: float) -> Report:
    """The VM's judged report on `patch_id` once the service holds it (read from its
    database): a failed load at once, an applied one after the VM's health window."""
    assert demo.admin is not None
    deadline = time.monotonic() + timeout
    while True:
        report = demo.admin.reported(demo.facts.vm_machine_id, patch_id)
        if report is not None and (report.result != "applied" or report.health is not None):
            return report
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"The VM's verdict on {patch_id} did not reach the service within {timeout:g} s "
                f"(last report: {report})."
            )
        time.sleep(0.5)


def describe(report: Report) -> str:
    """A report in one line: result, errno or reason, health, evidence."""
    parts = [f"result={report.result}"]
    if report.errno is not None:
        parts.append(f"errno={report.errno}")
    if report.reason:
        parts.append(f"reason={report.reason}")
    if report.health:
        parts.append(f"health={report.health}")
    if report.evidence:
        parts.append(f"evidence={report.evidence}")
    return ", ".join(parts)


def halt_fix4(demo: Demo) -> None:
    """Fix 4 passes pre-flight, turns unhealthy on the VM; the canaries replay that; halt."""
    fleet, vm, admin = demo.fleet, demo.vm, demo.admin
    assert fleet is not None and vm is not None and admin is not None
    patch_id = demo.facts.patch_ids[FIX4.label]
    canaries = round(CANARY_PERCENTAGE * BUCKETS / 100)
    vm_bucket = bucket(demo.facts.vm_machine_id, patch_id)
    demo.narrator.say(
        f"the VM is one of {patch_id}'s canaries (bucket {vm_bucket} < {canaries} of "
        f"{BUCKETS}); it checks in first:"
    )
    demo.guest("refresh")
    # Read at once: the health window must see what the replacement does.
    demo.facts.cmdline["fix4"] = after = demo.cmdline()
    demo.facts.loaded["fix4"] = demo.loaded()
    demo.narrator.say(f"a user reads /proc/cmdline: {_params(after)}")
    demo.narrator.say(
        f"waiting for the VM's health verdict (health-window={HEALTH_WINDOW_SECONDS} s)…"
    )
    report = vm_verdict(demo, patch_id, timeout=HEALTH_WINDOW_SECONDS + 90)
    demo.facts.vm_report = report
    demo.facts.status["fix4"] = demo.status_json()
    dmesg = vm.run(["dmesg"]).check().stdout
    demo.facts.vm_dmesg = "\n".join(
        line
        for line in dmesg.splitlines()
        if (FIX4.module in line or "WARNING:" in line) and "Modules linked in:" not in line
    )
    demo.narrator.say("the VM's kernel log (dmesg, the lines naming fix 4):")
    demo.narrator.output(demo.facts.vm_dmesg)
    demo.narrator.say(f"the VM's report, as the service stored it: {describe(report)}")
    fleet.replay(report)
    demo.facts.replayed = report
    demo.narrator.say(
        "the simulated canaries now check in and replay the VM's outcome: each sends the "
        "report the VM's real kernel gave, nothing the demo made up"
    )
    progress = fleet.follow(
        patch_id,
        done=lambda state: state.halted,
        timeout=CANARY_SOAK_SECONDS + 60,
        on_change=_narrate_rollout(demo),
    )
    demo.facts.fleet[FIX4.label] = progress
    demo.facts.fleet_reports = {
        action.machine_id: admin.reported(action.machine_id, patch_id)
        for action in progress.actions
    }
    shown = demo.host_json("patches", "show", patch_id)
    demo.facts.shown[FIX4.label] = shown
    demo.narrator.say(f"halted: {shown['rollout']['halt_reason']}")
    demo.facts.shown[FIX2.label] = admin.json("patches", "show", demo.facts.patch_ids[FIX2.label])
    demo.signals()
    demo.narrator.output(demo.host("patches", "list"))


def open_dashboard(demo: Demo, keep_running: Callable[[], None] | None) -> None:
    """An admin for the dashboard; with `keep_running`, wait on it before stopping."""
    assert demo.admin is not None and demo.service is not None
    created = demo.admin.json("admins", "create", "demo", "--role", "admin")
    key_file = demo.workdir / "admin.key"
    key_file.touch(mode=0o600)
    key_file.write_text(created["key"] + "\n")
    demo.facts.dashboard = f"{demo.service.url}/ui (log in with the key in {key_file})"
    demo.narrator.say(f"dashboard: {demo.facts.dashboard}")
    if keep_running is not None:
        keep_running()


def shut_down(demo: Demo, stack: contextlib.ExitStack) -> None:
    started = time.monotonic()
    if demo.vm is not None:
        demo.vm.close()
    vm_seconds = time.monotonic() - started
    stack.close()
    demo.narrator.say(
        f"VM powered off ({vm_seconds:.1f} s), "
        f"service stopped ({time.monotonic() - started - vm_seconds:.1f} s)"
    )
    # A process killed a moment ago may still be exiting on a busy machine: what is
    # still there after EXIT_GRACE seconds was left running.
    deadline = time.monotonic() + EXIT_GRACE
    while marked(demo.facts.run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    demo.facts.left_running = left = kill_marked(demo.facts.run_id)
    demo.facts.left_listening = [port for port in demo.facts.ports if listening(port)]
    names = f" ({', '.join(f'{name} {pid}' for pid, name in left)})" if left else ""
    demo.narrator.say(
        f"processes left: {len(left)}{names}, "
        f"ports still listening: {len(demo.facts.left_listening)}"
    )


@contextlib.contextmanager
def cleanup(run_id: str) -> Iterator[contextlib.ExitStack]:
    """A stack for what the run starts: closed on the way out, whatever happened, and
    then every process still carrying the run's id is killed."""
    with contextlib.ExitStack() as stack:
        try:
            yield stack
        finally:
            stack.close()
            kill_marked(run_id)


def run(
    narrator: Narrator,
    workdir: Path,
    client: Client | None = None,
    *,
    keep_running: Callable[[], None] | None = None,
) -> Facts:
    """Perform the whole demo in `workdir`; what it saw. Stops everything it started.

    `client`: how the VM runs the client (default: the snap `make snap` builds).
    `keep_running`: called with everything still running before the last step
    (`make demo KEEP=1` waits there for Enter).
    """
    kernel = default_release()
    facts = Facts(run_id=uuid.uuid4().hex, kernel=kernel)
    # The client is known once step 2 has built the snap.
    demo = Demo(narrator, workdir, client or source_tree_client(), facts, kernel)
    narrator.total_steps = STEPS
    with cleanup(facts.run_id) as stack:
        with narrator.step(f"Boot the VM: Debian's kernel {kernel} under qemu"):
            boot(demo, stack)
        with narrator.step("Build the client snap and four livepatches for that kernel"):
            demo.client = client or build_client(demo)
            facts.client = demo.client.description
            build(demo)
        with narrator.step("Create the service's keys and a private CA"):
            keys(demo)
        with narrator.step("Start the patch service"):
            serve(demo, stack)
        with narrator.step("Create enrolment tokens"):
            tokens(demo)
        with narrator.step("Publish fix 1 with its CVE"):
            publish_fix1(demo)
        with narrator.step(f"In the VM: install {demo.client.description}, start its daemon"):
            start_guest(demo)
        with narrator.step("In the VM: enable with the token, refresh: patched live"):
            enable(demo)
        with narrator.step("In the VM: status, D-Bus signal, login message"):
            report(demo)
        with narrator.step(f"Enrol a fleet of {FLEET_SIZE} simulated machines"):
            enrol_fleet(demo, stack)
        with narrator.step("Roll out cumulative fix 2: canary → moderate → all"):
            roll_out_fix2(demo)
        with narrator.step("Publish fixes 3 and 4: pre-flight on the real kernel refuses 3"):
            preflight_both(demo)
        with narrator.step("Fix 4 turns unhealthy on the VM; its canaries replay that: halted"):
            halt_fix4(demo)
        with narrator.step("Stop everything"):
            open_dashboard(demo, keep_running)
            shut_down(demo, stack)
    facts.timings = list(narrator.timings)
    facts.total_seconds = narrator.elapsed()
    return facts
