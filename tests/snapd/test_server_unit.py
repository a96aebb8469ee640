"""`livepatch-server install-unit` under a real systemd: the snapd test machine's.

The service's venv (tests/snapd/server.py, for the guest's Debian python3.11) is
unpacked at /opt/livepatch-server; then the steps `install-unit` prints are run as an
operator would (systemd-sysusers, the data directory, `keys init` as the service
user, `systemctl start`). The guest script prints what it saw as KEY=VALUE lines;
the assertions are here. Same session machine as the spread tasks: one boot.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.snapd import server
from tests.snapd.conftest import Rig

pytestmark = [pytest.mark.kernel, pytest.mark.snapd, pytest.mark.timeout(1800)]
PORT = 8443
HERE = Path(__file__).resolve().parent
PUBLIC = "/var/lib/livepatch-server/blobs/"

SCRIPT = (HERE / "server-unit.sh").read_text().replace("PORT", str(PORT))


def facts(output: str) -> dict[str, str]:
    return dict(re.findall(r"^FACT (\w+)=(.*)$", output, re.MULTILINE))


def test_the_unit_runs_hardened_under_systemd_and_comes_back_after_a_kill(rig: Rig) -> None:
    share = rig.share / "service"
    share.mkdir(exist_ok=True)
    shutil.copy2(server.tarball(), share / "livepatch-server.tar")
    server.tls_pair(share)
    result = rig.machine.run(SCRIPT, timeout=1500)
    rig.timings["server-unit"] = result.seconds
    print(result.output)
    seen = facts(result.output)
    assert result.returncode == 0, result.describe()
    assert seen["serving"] == "yes", result.describe()
    assert seen["user"] == "livepatch-server"
    assert seen["nofile"] == "65536"
    assert seen["protect_system"] == "strict"
    assert seen["data_dir"] == "livepatch-server:livepatch-server:700"
    assert seen["database"] == "livepatch-server:livepatch-server:600"
    assert seen["not_owned"] == "0", result.output
    # `keys init` (run as the user, outside the unit's UMask) leaves the public material it
    # publishes readable (certificates, metadata) inside the 0700 tree; never a key or the db
    listing = re.findall(
        r"^livepatch-server:livepatch-server (\d+) (/var/lib/\S+)$", result.output, re.M
    )
    assert len(listing) > 10, result.output
    for mode, path in listing:
        if int(mode, 8) & 0o007:
            assert "/blobs/" in path and path.endswith((".json", ".pem")), (mode, path)
        if "/keys/" in path and not path.startswith(PUBLIC):
            assert mode in ("600", "700"), (mode, path)
    assert seen["etc_write"] == "1" and seen["opt_write"] == "1", result.output
    assert seen["state_write"] == "ok" and seen["etc_untouched"] == "yes"
    assert float(seen["exposure"]) <= 2.0, result.output
    assert seen["restarts"] == "1" and seen["new_pid_differs"] == "yes", result.output
    assert seen["serving_again"] == "yes", result.output
