from __future__ import annotations

import subprocess
import sys

import pytest
from dbus_fast import Message, MessageType

from livepatch.dbus import INTERFACE, OBJECT_PATH
from livepatch.dbus.notifications import Applied, Failed
from livepatch.dbus.notifier import Options, event_of, parse_args


def test_patch_applied_signal_is_an_event() -> None:
    msg = Message.new_signal(
        OBJECT_PATH, INTERFACE, "PatchApplied", "sas", ["lp-3", ["cve-2024-1", "CVE-2024-2"]]
    )
    assert event_of(msg) == Applied("lp-3", ("CVE-2024-1", "CVE-2024-2"))


def test_patch_failed_signal_is_an_event() -> None:
    msg = Message.new_signal(OBJECT_PATH, INTERFACE, "PatchFailed", "ss", ["lp-3", "No."])
    assert event_of(msg) == Failed("lp-3", "No.")


@pytest.mark.parametrize(
    "msg",
    [
        Message.new_signal("/other", INTERFACE, "PatchApplied", "sas", ["p", []]),
        Message.new_signal(OBJECT_PATH, "io.other.Iface", "PatchApplied", "sas", ["p", []]),
        Message.new_signal(OBJECT_PATH, INTERFACE, "PatchApplied", "ss", ["p", "x"]),
        Message.new_signal(OBJECT_PATH, INTERFACE, "PatchFailed", "sas", ["p", []]),
        Message.new_signal(OBJECT_PATH, INTERFACE, "Unknown", "", []),
        Message(
            message_type=MessageType.METHOD_CALL,
            path=OBJECT_PATH,
            interface=INTERFACE,
            member="PatchApplied",
            signature="sas",
            body=["p", []],
        ),
    ],
)
def test_anything_else_is_not(msg: Message) -> None:
    assert event_of(msg) is None


def test_options_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEPATCH_SYSTEM_BUS_ADDRESS", "unix:path=/tmp/x")
    args = parse_args([])
    assert args.system_bus == "unix:path=/tmp/x"
    assert (args.coalesce, args.retry) == (Options().coalesce, Options().retry)
    assert parse_args(["--system-bus", "unix:path=/y"]).system_bus == "unix:path=/y"


def test_motd_and_pure_modules_import_without_dbus_fast() -> None:
    code = (
        "import sys; sys.modules['dbus_fast'] = None\n"
        "import livepatch.motd, livepatch.dbus, livepatch.dbus.properties\n"
        "import livepatch.dbus.notifications\n"
        "assert 'dbus_fast' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n    import livepatch.dbus.service\nexcept ImportError:\n    print('lazy')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "lazy\n"
