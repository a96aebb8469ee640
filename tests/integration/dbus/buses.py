"""Private dbus-daemons for the tests: a system-like bus with our policy, and others."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POLICY = Path(__file__).parents[3] / "interfaces" / "io.livepatch.Livepatch1.conf"

# The default policy of Debian's /usr/share/dbus-1/system.conf.
SYSTEM_DEFAULT = """
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
"""

# Everyone may do anything: shows what the service checks by itself (as under
# snapd, whose generated policy lets anyone call the name).
OPEN = """
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
"""


@dataclass(frozen=True)
class Bus:
    address: str
    process: subprocess.Popen[str]


def config(socket: Path, *, kind: str, policy: str, include: Path | None = None) -> str:
    included = f"<include>{include}</include>" if include else ""
    return (
        '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
        ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
        f"<busconfig><type>{kind}</type><auth>EXTERNAL</auth>"
        f"<listen>unix:path={socket}</listen>{policy}{included}</busconfig>\n"
    )


@contextmanager
def private_bus(
    kind: str = "system", *, policy: str = SYSTEM_DEFAULT, ours: bool = True
) -> Iterator[Bus]:
    """A dbus-daemon on a socket every user can reach; stopped on exit."""
    directory = Path(tempfile.mkdtemp(prefix="lp-bus-", dir="/tmp"))
    directory.chmod(0o755)
    path = directory / "bus.conf"
    path.write_text(
        config(directory / "socket", kind=kind, policy=policy, include=POLICY if ours else None)
    )
    process = subprocess.Popen(
        ["dbus-daemon", f"--config-file={path}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address.startswith("unix:"), f"dbus-daemon did not start: {address!r}"
        yield Bus(address, process)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def as_nobody(*command: str) -> list[str]:
    """`command` run as the unprivileged user nobody (the tests run as root)."""
    assert os.geteuid() == 0, "these tests run as root to start a caller as another uid"
    return ["runuser", "-u", "nobody", "--", *command]
