"""The client against the real patch service over HTTPS on loopback (private CA), with
the kernel layer driving a fake kernel tree: enrol, verify, apply, report, renew,
de-enrol, and every failure the issue lists, each with its message.

Each test runs "its own" kernel (a distinct kernel key), so the patches one test
publishes are never candidates for another's.
"""

from __future__ import annotations

import errno
import itertools
import logging
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from livepatch.client import commands
from livepatch.client.checkin import CheckIn, Runtime
from livepatch.client.errors import (
    ServiceUnreachable,
    TlsFailure,
    TokenExhausted,
    UnknownToken,
    UnsupportedKernel,
)
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.state import CredentialFile, PatchState, Report, State, StateFile
from livepatch.client.wiring import default_runtime
from livepatch.kernel import LivepatchDriver
from tests.integration.client.proxy import RecordingProxy, running
from tests.integration.client.service import PatchService
from tests.integration.server.live import free_port
from tests.unit.kernel.fakes import FakeKernel, FakeSyscalls

KERNELS = (f"6.1.0-{n}-amd64" for n in itertools.count(100))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatchService]:
    service = PatchService(tmp_path_factory.mktemp("service"))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@dataclass
class Machine:
    """One client: its state directory, runtime and the fake kernel it drives."""

    rt: Runtime
    kernel: FakeKernel
    key: str

    def state(self) -> State:
        return StateFile(self.rt.paths.state).load()

    def check(self, **changes: object) -> CheckIn:
        return CheckIn(replace(self.rt, **changes))  # type: ignore[arg-type]


def booted(rt: Runtime, root: Path) -> Machine:
    """`rt` running a kernel of its own (a fresh tree under `root`)."""
    key = next(KERNELS)
    root.mkdir()
    fake = FakeKernel(root)
    fake.write("proc/sys/kernel/osrelease", f"{key}\n")
    driver = LivepatchDriver(root, syscalls=FakeSyscalls(fake), clock=fake.clock, sleep=fake.sleep)
    return Machine(replace(rt, kernel=KernelAdapter(root, driver=driver)), fake, key)


def machine(tmp_path: Path, service: PatchService) -> Machine:
    rt = default_runtime({"LIVEPATCH_STATE_DIR": str(tmp_path / "client")})
    commands.set_config(rt.paths, [f"remote-server={service.url}", f"ca-certs={service.ca}"])
    return booted(rt, tmp_path / "kernel")


@pytest.fixture(autouse=True)
def own_machine_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each enrolment is a machine of its own.

    On this host every client would send the host's /etc/machine-id, and the
    service takes a known id enrolled again without proof for a cloned image
    (its reports are refused).
    """
    ids = (f"client-test-{uuid.uuid4().hex}" for _ in itertools.count())
    monkeypatch.setattr(commands, "machine_id", lambda: next(ids))


@pytest.fixture
def client(tmp_path: Path, service: PatchService) -> Machine:
    return machine(tmp_path, service)


def loaded(m: Machine) -> list[str]:
    return [name for name, _ in m.kernel.finit_calls]


def test_enrol_verify_apply_report_and_de_enrol(client: Machine, service: PatchService) -> None:
    patch_id = service.publish(client.key, "lp_cve_2024_1086")
    result = commands.enable(client.rt, service.token())
    assert result.outcome is not None and result.outcome.error is None
    assert loaded(client) == ["lp_cve_2024_1086"]
    entry = commands.status(client.rt)["Status"][0]
    assert entry["Kernel"] == client.key
    assert entry["Livepatch"]["State"] == "applied"
    [fix] = entry["Livepatch"]["Fixes"]
    assert (fix["Name"], fix["Patched"], fix["Severity"]) == ("cve-2024-1086", True, "high")
    assert client.state().pending_reports == ()  # the report was accepted
    assert service.reports(patch_id) == (1, 0)
    disabled = commands.disable(client.rt, unload=False)
    assert disabled.service_error is None
    assert disabled.kept == ("lp_cve_2024_1086",)
    assert client.state().enrolment is None


def test_bad_token_is_unknown_auth_token(client: Machine) -> None:
    with pytest.raises(UnknownToken, match=r"^Unknown Auth-Token: the patch service does not"):
        commands.enable(client.rt, "0" * 32)
    assert client.state().enrolment is None


def test_token_out_of_machines(client: Machine, service: PatchService) -> None:
    token = service.token(machines=1)
    with service.http() as http:
        other = {"machine_id": "another-machine", "hostname": "other", "kernel": client.key}
        taken = http.post("/v1/enrol", json={"token": token, **other, "architecture": "amd64"})
    assert taken.status_code == 201, taken.text
    with pytest.raises(TokenExhausted) as caught:
        commands.enable(client.rt, token)
    assert str(caught.value) == (
        "This token has no machine slots left; disable another machine or ask for a new token."
    )
    assert client.state().enrolment is None


def test_service_unreachable(client: Machine, service: PatchService) -> None:
    closed = f"https://127.0.0.1:{free_port()}"
    commands.set_config(client.rt.paths, [f"remote-server={closed}"])
    with pytest.raises(ServiceUnreachable) as caught:
        commands.enable(client.rt, service.token())
    message = str(caught.value)
    assert message.startswith(f"Cannot reach the patch service at {closed} (")
    assert message.endswith("check the network, the proxy settings and remote-server.")


def test_tls_failure_without_the_private_ca(client: Machine, service: PatchService) -> None:
    commands.set_config(client.rt.paths, ["ca-certs="])
    with pytest.raises(TlsFailure) as caught:
        commands.enable(client.rt, service.token())
    message = str(caught.value)
    assert message.startswith(f"TLS verification of the patch service at {service.url} failed")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert message.endswith("check ca-certs and the server's certificate.")


def test_tls_failure_during_a_check_in_is_a_tls_failure(
    client: Machine, service: PatchService
) -> None:
    outcome = commands.enable(client.rt, service.token()).outcome
    assert outcome is not None and outcome.error is None
    commands.set_config(client.rt.paths, ["ca-certs="])
    assert isinstance(client.check().run().error, TlsFailure)
    message = failed_check(client, "tls-failure")
    assert message.startswith(f"TLS verification of the patch service at {service.url} failed")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert message.endswith("check ca-certs and the server's certificate.")


def test_https_proxy_carries_enrol_and_check_in_except_to_no_proxy_hosts(
    tmp_path: Path, service: PatchService
) -> None:
    recording = RecordingProxy()
    with running(recording) as proxy:
        (tmp_path / "proxied").mkdir()
        proxied = machine(tmp_path / "proxied", service)
        commands.set_config(proxied.rt.paths, [f"https-proxy={proxy}"])
        service.publish(proxied.key, "lp_via_proxy")
        outcome = commands.enable(proxied.rt, service.token()).outcome
        assert outcome is not None and outcome.error is None
        assert loaded(proxied) == ["lp_via_proxy"]  # metadata and module came through it
        tunnels = len(recording.seen)
        assert tunnels >= 2  # the API client's session and the fetcher's
        assert set(recording.seen) == {f"CONNECT 127.0.0.1:{service.port}"}

        (tmp_path / "direct").mkdir()
        direct = machine(tmp_path / "direct", service)
        commands.set_config(direct.rt.paths, [f"https-proxy={proxy}", "no-proxy=127.0.0.1"])
        outcome = commands.enable(direct.rt, service.token()).outcome
        assert outcome is not None and outcome.error is None
        assert direct.state().patch_state is PatchState.KERNEL_UPGRADE_REQUIRED
        assert len(recording.seen) == tunnels  # enrolled and checked in without the proxy


def test_unsupported_kernel(client: Machine, service: PatchService) -> None:
    shutil.rmtree(client.kernel.root / "sys/kernel/livepatch")
    with pytest.raises(UnsupportedKernel) as caught:
        commands.enable(client.rt, service.token())
    message = str(caught.value)
    # Ubuntu Pro recognises a failed enable by "unsupported kernel" on stderr.
    assert message.startswith(f"This machine runs an unsupported kernel ({client.key}): ")
    assert "/sys/kernel/livepatch" in message
    assert client.state().enrolment is None


def enrolled_then_published(m: Machine, service: PatchService, module: str) -> str:
    """Enrol while nothing is published for the kernel, then publish a patch for it."""
    outcome = commands.enable(m.rt, service.token()).outcome
    assert outcome is not None and outcome.error is None
    assert m.state().patch_state is PatchState.KERNEL_UPGRADE_REQUIRED
    return service.publish(m.key, module)


def failed_check(m: Machine, code: str) -> str:
    """Run a check that must fail with `code`; its message, as recorded in the state."""
    outcome = m.check().run()
    assert outcome.error is not None and outcome.error.code == code, outcome.error
    [error] = m.state().errors
    assert error.code == code
    return error.message


def test_modules_disabled(client: Machine, service: PatchService) -> None:
    patch_id = enrolled_then_published(client, service, "lp_modules_disabled")
    client.kernel.write("proc/sys/kernel/modules_disabled", "1\n")
    message = failed_check(client, "modules-disabled")
    assert message.startswith("Module loading is disabled on this machine")
    assert loaded(client) == []
    assert service.reports(patch_id) == (0, 1)


def test_lockdown(client: Machine, service: PatchService) -> None:
    enrolled_then_published(client, service, "lp_lockdown")
    client.kernel.write("sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    client.kernel.fail_finit = errno.EPERM
    message = failed_check(client, "lockdown-refused")
    assert message.startswith("Kernel lockdown (integrity mode) refused module lp_lockdown")
    assert client.state().applied is None


def test_signature_rejected_by_the_kernel(client: Machine, service: PatchService) -> None:
    enrolled_then_published(client, service, "lp_key_rejected")
    client.kernel.write("sys/module/module/parameters/sig_enforce", "Y\n")
    client.kernel.fail_finit = errno.EKEYREJECTED
    message = failed_check(client, "signature-rejected")
    assert message.startswith("The kernel rejected the signature of module lp_key_rejected")
    assert "EKEYREJECTED" in message


def test_signature_rejected_by_us_loads_nothing(client: Machine, service: PatchService) -> None:
    """The certificate that signed the patch is revoked: our own check refuses it
    before the kernel ever sees it. (Later patches are signed by its successor,
    so the other tests are unaffected whatever the order.)"""
    patch_id = enrolled_then_published(client, service, "lp_revoked")
    before = service.admin_json("keys", "status")
    [serial] = [
        entry["what"].split()[2]
        for entry in before
        if entry["what"].startswith("signing certificate") and "(current)" in entry["what"]
    ]
    service.admin("keys", "rotate-signing", "--grace-days", "0")
    service.admin("keys", "revoke-signing", serial)
    message = failed_check(client, "signature-failure")
    assert message.startswith(f"Patch {patch_id} failed signature verification (")
    assert message.endswith("); it was not loaded.")
    assert loaded(client) == []
    assert list(client.rt.paths.modules.glob("*.ko")) == []
    assert service.reports(patch_id) == (0, 1)


def test_transition_stalled_then_completed(client: Machine, service: PatchService) -> None:
    enrolled_then_published(client, service, "lp_stalls")
    client.kernel.stall_next = True
    client.kernel.add_task(4242, "stuck-worker", state=0)  # still on the old code
    message = failed_check(client, "transition-stalled")
    assert message.startswith(
        "The patching transition of livepatch lp_stalls did not finish within 60 s and is "
        "still in progress (tasks still on the old code: stuck-worker (pid 4242))"
    )
    state = client.state()
    assert state.applied is None and state.applying is not None
    assert state.patch_state is PatchState.APPLYING
    # still stalled at the next check: waited again, still not recorded as applied
    assert failed_check(client, "transition-stalled") == message
    assert client.state().applied is None
    client.kernel.patches["lp_stalls"].stall = False  # the blocking task moved on
    client.kernel.add_task(4242, "stuck-worker", state=1)
    outcome = client.check().run()
    assert outcome.error is None
    assert client.state().applied is not None
    assert client.state().patch_state is PatchState.APPLIED


def test_credential_is_renewed_before_it_expires(client: Machine, service: PatchService) -> None:
    patch_id = service.publish(client.key, "lp_renewal")
    commands.enable(client.rt, service.token())
    credentials = CredentialFile(client.rt.paths.credential)
    first = credentials.load()
    assert first is not None
    later = first.expires - timedelta(days=5)  # inside the last quarter of its lifetime
    outcome = client.check(clock=lambda: later).run()
    assert outcome.error is None
    renewed = credentials.load()
    assert renewed is not None and renewed.token != first.token
    assert renewed.expires > first.expires - timedelta(minutes=1)
    machine_id = client.state().enrolment.machine_id  # type: ignore[union-attr]
    with service.http() as http:
        stale = http.post(
            f"/v1/machines/{machine_id}/renew",
            headers={"Authorization": f"Bearer {first.token}"},
        )
        assert stale.status_code == 401  # the old credential stopped working
    # the renewed credential carries on: a report goes through with it
    service.publish(client.key, "lp_renewal_2")
    assert client.check().run().error is None
    assert service.reports(patch_id) == (1, 0)
    assert datetime.now(UTC) < renewed.expires


def test_reports_refused_for_good_are_dropped_and_the_rest_delivered(
    client: Machine, service: PatchService, caplog: pytest.LogCaptureFixture
) -> None:
    patch_id = service.publish(client.key, "lp_queue")
    elsewhere = service.publish(next(KERNELS), "lp_queue_elsewhere")
    commands.enable(client.rt, service.token())
    assert service.reports(patch_id) == (1, 0)
    states = StateFile(client.rt.paths.state)
    queue = (
        Report(elsewhere, client.key, "applied"),  # 403 wrong-kernel
        Report("lp-never-published", client.key, "applied"),  # 404 not-found
        Report(patch_id, client.key, "failed", reason="a later outcome"),
    )
    states.save(replace(states.load(), pending_reports=queue))
    with caplog.at_level(logging.WARNING, logger="livepatch.client.checkin"):
        assert client.check().run().error is None
    assert client.state().pending_reports == ()
    assert service.reports(patch_id) == (0, 1)  # delivered behind the refused ones
    codes = [r.args[2] for r in caplog.records if "for good" in r.msg]  # type: ignore[index]
    assert codes == ["wrong-kernel", "not-found"]


def test_after_a_reboot_into_another_kernel_its_reports_count_on_the_same_record(
    client: Machine, service: PatchService, tmp_path: Path
) -> None:
    first = service.publish(client.key, "lp_before_reboot")
    commands.enable(client.rt, service.token(machines=1))
    machine_id = client.state().enrolment.machine_id  # type: ignore[union-attr]
    assert service.reports(first) == (1, 0)
    rebooted = booted(client.rt, tmp_path / "kernel-after-reboot")
    second = service.publish(rebooted.key, "lp_after_reboot")
    outcome = rebooted.check().run()
    assert outcome.error is None and outcome.applied is not None
    assert rebooted.state().pending_reports == ()
    assert service.reports(second) == (1, 0)  # counted: not refused as wrong-kernel
    shown = service.admin_json("machines", "show", machine_id)
    assert (shown["kernel"], shown["duplicate"]) == (rebooted.key, False)
    [listed] = [m for m in service.admin_json("machines", "list") if m["machine_id"] == machine_id]
    assert listed["kernel"] == rebooted.key  # one record, moved to the new kernel
