"""`livepatch status` from files alone, when reconciling with the kernel would change nothing.

The full path (``commands.status``) loads the state model and the kernel
layer, then reconciles the record with what the kernel has loaded. In the
settled states (the record describes the running kernel, no load is in
flight, and what it says is applied is loaded and enabled) reconciling is
the identity, so the document is a function of the state file's own JSON:
this module checks that, reads the few kernel and host facts the document
shows, and builds it with ``statusdoc``, the full path's own builder. Not
enrolled and never enrolled are settled states too.

Whenever it is unsure (a record it would not have written, a kernel file it
may not read, a patch the kernel is removing), it gives None and the full
path answers. The value sets below mirror ``client.state`` and the settled
check mirrors ``transitions.reconcile``; unit tests pin both.
Standard library only, and little of it: this module is the fast path.
"""

import errno
import os
import time

from livepatch.client import jsonlite, quickconfig, statusdoc
from livepatch.client.locks import is_locked
from livepatch.kernelnames import architecture_name, patch_key

TYPE_CHECKING = False  # typing costs ~10 ms; annotations only (see livepatch.cli)
if TYPE_CHECKING:
    from typing import Any

SUPPORT = frozenset(
    {"supported", "kernel-upgrade-required", "kernel-end-of-life", "unsupported", "unknown"}
)
CHECK_STATES = frozenset({"checked", "needs-check", "check-failed"})
PATCH_STATES = frozenset(
    {
        "applied",
        "applying",
        "nothing-to-apply",
        "unapplied",
        "kernel-upgrade-required",
        "apply-failed",
    }
)
TIERS = ("community", "stable")
REPORT_FIELDS = frozenset(
    {
        "patch_id",
        "kernel",
        "result",
        "errno",
        "reason",
        "duration_ms",
        "taint",
        "health",
        "evidence",
    }
)
REPORT_REQUIRED = frozenset({"patch_id", "kernel", "result"})
NEVER_ENROLLED: "dict[str, Any]" = {
    "version": 1,
    "enrolment": None,
    "kernel": None,
    "supported": "unknown",
    "check_state": "needs-check",
    "last_check": None,
    "next_check": None,
    "failures": 0,
    "patch_state": "unapplied",
    "applied": None,
    "applying": None,
    "available": None,
    "errors": [],
    "pending_reports": [],
    "watch": None,
    "health": None,
    "crashed": None,
    "revoked": None,
}
"""``state.to_json(State())``: what a machine without a state file has."""
OPTIONAL = frozenset({"watch", "health", "crashed", "revoked"})
"""Keys a state file written before the health watch, crash and revocation records lacks
(``state.from_json`` reads them as None)."""
LIVEPATCH_DIR = "sys/kernel/livepatch"
_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ENODEV)


class _Unsure(Exception):
    """Let the full path answer."""


def _kernel_file(root: str, relative: str) -> str | None:
    """A /proc or /sys file's text without its newline; None when it is not there."""
    try:
        with open(os.path.join(root, relative), "rb") as stream:
            return stream.read().decode("utf-8", "replace").rstrip("\n")
    except OSError as error:
        if error.errno in _NOT_THERE:
            return None
        raise _Unsure() from error


def _host_file(root: str, relative: str) -> str:
    try:
        with open(os.path.join(root, relative), encoding="utf-8", errors="replace") as stream:
            return stream.read()
    except OSError:
        return ""


def _loaded(root: str) -> dict[str, bool]:
    """Each livepatch the kernel holds: whether it is enabled."""
    base = os.path.join(root, LIVEPATCH_DIR)
    try:
        names = sorted(os.listdir(base))
    except OSError as error:
        if error.errno in _NOT_THERE:
            return {}
        raise _Unsure() from error
    loaded = {}
    for name in names:
        enabled = _kernel_file(root, f"{LIVEPATCH_DIR}/{name}/enabled")
        transition = _kernel_file(root, f"{LIVEPATCH_DIR}/{name}/transition")
        if enabled is None or transition is None:
            raise _Unsure()  # the kernel is removing it
        loaded[name] = enabled.strip() == "1"
    return loaded


def _is_time(value: object) -> bool:
    """Whether `value` is an aware time as ``datetime.isoformat`` writes it."""
    if not isinstance(value, str) or len(value) not in (25, 32):
        return False
    shape = "dddd-dd-ddTdd:dd:dd" + (".dddddd" if len(value) == 32 else "") + "sdd:dd"
    for char, expected in zip(value, shape, strict=True):
        if expected == "d":
            if not "0" <= char <= "9":
                return False
        elif expected == "s":
            if char not in "+-":
                return False
        elif char != expected:
            return False
    return True


def _strings(value: object, *names: str) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(n), str) for n in names)


def _patch_record(value: object) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or not _strings(
        value, "patch_id", "version", "module_name", "kernel"
    ):
        return False
    fixes = value.get("fixes")
    return isinstance(fixes, list) and all(
        _strings(fix, "name", "severity", "description") for fix in fixes
    )


def _report(value: object) -> bool:
    return (
        isinstance(value, dict)
        and REPORT_REQUIRED <= value.keys() <= REPORT_FIELDS
        and _strings(value, *REPORT_REQUIRED)
    )


def _optional(value: object, *names: str, times: tuple[str, ...] = ()) -> bool:
    """None, or an object with string `names` and `times` as ``isoformat`` writes them."""
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and _strings(value, *names)
        and all(_is_time(value.get(t)) for t in times)
    )


def _safety_records(record: "dict[str, Any]") -> bool:
    """The health watch, verdict, crash and revocation records (``client.state``)."""
    health = record.get("health")
    return (
        _optional(record.get("watch"), "patch_id", "module_name", times=("until",))
        and _optional(health, "patch_id", "verdict")
        and (health is None or isinstance(health.get("evidence", ""), str))
        and _optional(record.get("crashed"), "patch_id", "version", times=("at",))
        and _optional(record.get("revoked"), "patch_id", "version", "reason", "replaced_by")
    )


def well_formed(record: object) -> bool:
    """Whether `record` is a state document as ``state.to_json`` writes it."""
    if not isinstance(record, dict) or not NEVER_ENROLLED.keys() - OPTIONAL <= record.keys():
        return False
    enrolment = record["enrolment"]
    if enrolment is not None and not (
        _strings(enrolment, "machine_id", "tier", "server")
        and _is_time(enrolment.get("enrolled_at"))
    ):
        return False
    errors, reports = record["errors"], record["pending_reports"]
    return (
        (record["kernel"] is None or isinstance(record["kernel"], str))
        and record["supported"] in SUPPORT
        and record["check_state"] in CHECK_STATES
        and record["patch_state"] in PATCH_STATES
        and all(record[k] is None or _is_time(record[k]) for k in ("last_check", "next_check"))
        and type(record["failures"]) is int
        and all(_patch_record(record[k]) for k in ("applied", "applying", "available"))
        and isinstance(errors, list)
        and all(_strings(error, "code", "message") for error in errors)
        and isinstance(reports, list)
        and all(_report(report) for report in reports)
        and _safety_records(record)
    )


def settled(record: "dict[str, Any]", kernel_key: str, loaded: dict[str, bool]) -> bool:
    """Whether ``transitions.reconcile`` would return this record unchanged."""
    if record["kernel"] != kernel_key or record["applying"] is not None:
        return False
    applied, patch_state = record["applied"], record["patch_state"]
    if applied is None:
        return patch_state not in ("applied", "applying")
    return loaded.get(applied["module_name"]) is True and patch_state not in (
        "applying",
        "unapplied",
    )


def _record(state_dir: str, kernel_key: str) -> "dict[str, Any]":
    try:
        with open(os.path.join(state_dir, "state.json"), "rb") as stream:
            text = stream.read().decode("utf-8")
    except FileNotFoundError:
        return dict(NEVER_ENROLLED, kernel=kernel_key)  # reconcile's answer for State()
    except (OSError, ValueError) as error:
        raise _Unsure() from error
    try:
        record = jsonlite.loads(text)
    except ValueError as error:
        raise _Unsure() from error
    if not well_formed(record):
        raise _Unsure()
    return record  # type: ignore[no-any-return]


def _cpu_model(root: str) -> str:
    """The first "model name" in /proc/cpuinfo (``host.read_host``'s), read no further:
    the kernel writes a block per CPU as the file is read, so all of it costs a big
    machine milliseconds."""
    try:
        path = os.path.join(root, "proc/cpuinfo")
        with open(path, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return ""


def _boot_time(root: str) -> str | None:
    for line in _host_file(root, "proc/stat").splitlines():
        if line.startswith("btime "):
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(line.split()[1])))
    return None


def _uptime(root: str) -> int:
    text = _host_file(root, "proc/uptime").split()
    return int(float(text[0])) if text else 0


def _tier(record: "dict[str, Any]", settings: dict[str, str | int]) -> str:
    """``checkin.effective_tier``: the configured tier, else the enrolment's."""
    enrolment = record["enrolment"]
    name = settings["tier"] or (enrolment["tier"] if enrolment else "")
    return name if name in TIERS else TIERS[0]


def build(state_dir: str, root: str = "/", host: str = "/") -> "dict[str, Any] | None":
    """The status document, or None when the full path must build it.

    `root` is where the kernel's /proc and /sys are read (``KernelAdapter``'s
    root), `host` where the host facts are (``host.read_host``'s).
    """
    try:
        uname = os.uname()
        release = _kernel_file(root, "proc/sys/kernel/osrelease") or uname.release
        signature = _kernel_file(root, "proc/version_signature") or None
        machine = _kernel_file(root, "proc/sys/kernel/arch") or uname.machine
        key = patch_key(release, signature)
        record = _record(state_dir, key)
        if not settled(record, key, _loaded(root)):
            return None
        settings = quickconfig.load(state_dir)
        if settings is None:
            return None
        return statusdoc.document(
            record,
            kernel_key=key,
            architecture=architecture_name(machine),
            cpu_model=_cpu_model(host),
            boot_time=_boot_time(host),
            uptime=_uptime(host),
            tier=_tier(record, settings),
            daemon_running=is_locked(os.path.join(state_dir, "daemon.pid")),
        )
    except (_Unsure, ValueError):
        return None
