"""install, pre-refresh, post-refresh, check-health and remove, through their real logic.

The kernel is the kernel layer's fake /proc + /sys tree driven by the real
LivepatchDriver; the service is the client's in-memory fake; snapctl is the
stand-in with snapd's rules.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import replace
from pathlib import Path

import pytest

from livepatch.client import commands
from livepatch.client import config as settings
from livepatch.client.control import DaemonNotRunning
from livepatch.client.errors import DaemonUnavailable
from livepatch.client.kernelport import KernelAdapter
from livepatch.client.paths import Paths
from livepatch.client.state import StateFile
from livepatch.kernel import LivepatchDriver
from livepatch.snap import hooks, selftest
from livepatch.snap.environment import SnapEnvironment
from livepatch.snap.snapctl import HealthStatus
from tests.unit.client.fakes import make_world, patch
from tests.unit.kernel.fakes import FakeKernel, FakeSyscalls, deny


def environ_of(env: SnapEnvironment) -> dict[str, str]:
    return {
        "SNAP": str(env.snap),
        "SNAP_DATA": str(env.data),
        "SNAP_COMMON": str(env.common),
        "SNAP_REVISION": env.revision,
    }


@pytest.fixture
def kernel_tree(tmp_path: Path) -> FakeKernel:
    root = tmp_path / "kernel"
    root.mkdir()
    return FakeKernel(root)


def adapter(fake: FakeKernel) -> KernelAdapter:
    driver = LivepatchDriver(
        fake.root, syscalls=FakeSyscalls(fake), clock=fake.clock, sleep=fake.sleep
    )
    return KernelAdapter(fake.root, driver=driver)


# -- install ---------------------------------------------------------------------


def test_install_lays_out_the_data_and_writes_defaults(env, snapd):
    summary = hooks.install(env, snapd.snapctl)
    paths = env.paths
    assert paths.metadata.is_dir() and paths.modules.is_dir() and env.common.is_dir()
    assert oct(paths.metadata.stat().st_mode & 0o777) == "0o700"
    assert settings.load(paths.config) == settings.Config()
    assert oct(paths.config.stat().st_mode & 0o777) == "0o600"
    assert snapd.config == {"check-interval": settings.DEFAULT_CHECK_INTERVAL}
    assert str(paths.root) in summary


def test_install_keeps_a_check_interval_set_before_it(env, snapd):
    snapd.write({"config": {"check-interval": 15}, "health": None, "calls": []})
    hooks.install(env, snapd.snapctl)
    assert snapd.config == {"check-interval": 15}


# -- pre-refresh -----------------------------------------------------------------


def test_pre_refresh_refuses_while_the_kernel_is_in_transition(env, kernel_tree, capsys):
    env.paths.ensure()
    kernel_tree.add_patch("livepatch_cve_2024_1086", transition=True)
    deps = hooks.Dependencies(kernel=lambda: adapter(kernel_tree))
    code = hooks.main(["pre-refresh"], environ_of(env), deps)
    assert code == 1
    err = capsys.readouterr().err
    assert (
        "livepatch pre-refresh: Refusing to refresh while the kernel is still switching tasks "
        "to livepatch livepatch_cve_2024_1086; snapd tries the refresh again later." in err
    )
    assert "revision=x2 pre-refresh failed: Refusing" in env.journal.read_text()


def test_pre_refresh_refuses_during_a_check_in(env, kernel_tree):
    env.paths.ensure()
    kernel_tree.add_patch("livepatch_cve_2024_1086")
    with env.paths.lock.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what CheckIn.run holds from start to end
        with pytest.raises(hooks.RefreshRefused, match="a check-in, which may load a patch"):
            hooks.pre_refresh(env, adapter(kernel_tree))


def test_pre_refresh_lets_the_refresh_go_when_nothing_moves(env, kernel_tree):
    env.paths.ensure()
    kernel_tree.add_patch("livepatch_cve_2024_1086")  # loaded, transition finished
    assert "may go ahead" in hooks.pre_refresh(env, adapter(kernel_tree))


def test_pre_refresh_does_not_hold_a_refresh_it_cannot_judge(env, kernel_tree, monkeypatch):
    env.paths.ensure()
    kernel_tree.add_patch("livepatch_cve_2024_1086", transition=True)
    deny(monkeypatch, kernel_tree.root / "sys/kernel/livepatch")  # plug not connected
    assert "may go ahead" in hooks.pre_refresh(env, adapter(kernel_tree))


# -- post-refresh ----------------------------------------------------------------


def test_a_failing_self_test_fails_the_hook_so_snapd_reverts(env, capsys):
    def failing(snap, paths, environ):
        return [
            selftest.Check("imports", True, "fine"),
            selftest.Check("daemon", False, "the daemon did not start: ImportError: boom"),
        ]

    code = hooks.main(["post-refresh"], environ_of(env), hooks.Dependencies(selftest=failing))
    assert code == 1
    err = capsys.readouterr().err
    assert "self-test daemon: FAILED (the daemon did not start: ImportError: boom)" in err
    assert (
        "The new revision failed its self-test (daemon: the daemon did not start: ImportError: "
        "boom); snapd goes back to the previous revision." in err
    )
    assert "post-refresh failed" in env.journal.read_text()


def test_a_passing_self_test_lets_the_refresh_finish(env):
    def passing(snap, paths, environ):
        return [selftest.Check(name, True, "fine") for name in ("imports", "cli", "daemon")]

    assert hooks.main(["post-refresh"], environ_of(env), hooks.Dependencies(selftest=passing)) == 0
    assert "post-refresh ok: revision x2 passed its self-test (3 checks)" in env.journal.read_text()


# -- check-health ----------------------------------------------------------------


def status_doc(*, enrolled: bool = True, state: str = "applied", errors=()) -> dict:
    return {
        "Enrolled": enrolled,
        "Status": [{"Livepatch": {"State": state, "CheckState": "checked"}}],
        "Errors": list(errors),
    }


def query(answers: list) -> hooks.DaemonQuery:
    clock = [0.0]

    def ask(path, command, timeout):
        """`reload` (the verdict is about now) is answered ok, or fails as the daemon would."""
        assert command in ("reload", "status")
        if command == "reload" and not isinstance(answers[0], Exception):
            return {"ok": True}
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    return hooks.DaemonQuery(ask=ask, wait=2.0, sleep=sleep, clock=lambda: clock[0])


def test_check_health_reports_okay_when_patched(env, snapd):
    health = hooks.check_health(env, snapd.snapctl, query([{"ok": True, "status": status_doc()}]))
    assert health.status is HealthStatus.OKAY
    assert snapd.health == {"status": "okay", "message": "", "code": ""}


def test_check_health_waits_for_a_daemon_that_is_starting(env, snapd):
    answers = [DaemonNotRunning("x"), DaemonNotRunning("x"), {"ok": True, "status": status_doc()}]
    hooks.check_health(env, snapd.snapctl, query(answers))
    assert snapd.health["status"] == "okay"
    assert answers == []


def test_check_health_reports_an_error_when_the_daemon_never_answers(env, snapd):
    hooks.check_health(env, snapd.snapctl, query([DaemonNotRunning("x")] * 10))
    assert snapd.health == {
        "status": "error",
        "message": "The daemon does not answer; see: snap logs livepatch.livepatchd",
        "code": "daemon-not-answering",
    }


def test_check_health_reports_an_error_when_the_daemon_hangs(env, snapd):
    hooks.check_health(env, snapd.snapctl, query([DaemonUnavailable("no answer within 10 s")]))
    assert snapd.health["code"] == "daemon-not-answering"


def test_check_health_says_what_to_do_when_not_enabled(env, snapd):
    answer = {"ok": True, "status": status_doc(enrolled=False)}
    hooks.check_health(env, snapd.snapctl, query([answer]))
    assert snapd.health == {
        "status": "blocked",
        "message": "Not enabled yet: run sudo livepatch enable TOKEN",
        "code": "not-enabled",
    }


# -- remove ----------------------------------------------------------------------


def enrolled_world(tmp_path: Path):
    world = make_world(tmp_path)
    world.metadata.patches_list.append(patch("3", module="livepatch_cve_2024_1086"))
    rt = world.runtime()
    result = commands.enable(rt, "good-token")
    assert result.outcome is not None and result.outcome.error is None
    assert world.kernel.loaded()["livepatch_cve_2024_1086"].enabled
    return world, rt


def test_remove_de_enrols_and_says_the_loaded_patch_stays_until_reboot(tmp_path, env, capsys):
    world, rt = enrolled_world(tmp_path)
    machine = StateFile(rt.paths.state).load().enrolment.machine_id
    deps = hooks.Dependencies(runtime=lambda env: rt)
    assert hooks.main(["remove"], environ_of(env), deps) == 0
    err = capsys.readouterr().err
    assert f"livepatch remove: De-enrolled machine {machine} from https://patches.test." in err
    assert (
        "livepatch remove: Loaded livepatch modules stay in the kernel until the next reboot: "
        "livepatch_cve_2024_1086." in err
    )
    assert "deregister" in world.service.calls
    assert StateFile(rt.paths.state).load().enrolment is None
    assert world.kernel.unloaded == []  # nothing was taken out of the kernel
    assert "until the next reboot" in env.journal.read_text()


def test_remove_still_succeeds_when_the_service_is_down(tmp_path):
    world, rt = enrolled_world(tmp_path)
    world.service.down = 1
    lines = hooks.remove(rt)
    assert any("The patch service was not told" in line for line in lines)
    assert StateFile(rt.paths.state).load().enrolment is None


def test_remove_of_a_machine_never_enabled(tmp_path):
    world = make_world(tmp_path)
    assert hooks.remove(world.runtime()) == [
        "This machine was not enabled, so there is nothing to de-enrol.",
        "No livepatch module is loaded in the kernel.",
    ]


def test_remove_says_loaded_patches_stay_even_when_it_cannot_list_them(
    tmp_path, kernel_tree, monkeypatch
):
    kernel_tree.add_patch("livepatch_cve_2024_1086")
    deny(monkeypatch, kernel_tree.root / "sys/kernel/livepatch")
    world = make_world(tmp_path)
    rt = replace(world.runtime(), kernel=adapter(kernel_tree))
    last = hooks.remove(rt)[-1]
    assert last.startswith(
        "Livepatch modules already loaded stay in the kernel until the next reboot (which "
        "ones could not be read: Permission to access"
    )


# -- running hooks ---------------------------------------------------------------


def test_outside_a_snap_the_hook_says_so(capsys):
    assert hooks.main(["install"], {}) == 1
    assert "$SNAP is not set, so this is not running inside the snap" in capsys.readouterr().err


def test_an_unknown_hook_is_a_usage_error(capsys):
    assert hooks.main(["gate-auto-refresh"], {}) == 2
    assert "usage:" in capsys.readouterr().err


def test_the_journal_keeps_the_last_lines(env, snapd):
    env.common.mkdir(parents=True)
    env.journal.write_text("".join(f"old line {n}\n" for n in range(hooks.JOURNAL_LINES + 50)))
    deps = hooks.Dependencies(snapctl=snapd.snapctl)
    assert hooks.main(["install"], environ_of(env), deps) == 0
    lines = env.journal.read_text().splitlines()
    assert len(lines) == hooks.JOURNAL_LINES
    assert lines[0] == "old line 51" and " install ok: created " in lines[-1]


def test_hook_logs_never_carry_setting_values(env, snapd, capsys):
    snapd.write(
        {
            "config": {"https-proxy": "http://user:hunter2@proxy.example.com:3128"},
            "health": None,
            "calls": [],
        }
    )
    deps = hooks.Dependencies(snapctl=snapd.snapctl)
    assert hooks.main(["configure"], environ_of(env), deps) == 0
    output = capsys.readouterr().err + env.journal.read_text()
    assert "applied https-proxy" in output
    assert "hunter2" not in output


def test_paths_match_the_ones_the_apps_use(env):
    assert env.paths == Paths.from_environment({"SNAP_DATA": str(env.data)})
    saved = json.dumps(hooks.snap_value("check-interval", 30))
    assert saved == '"30"'
