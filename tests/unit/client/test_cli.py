from __future__ import annotations

import errno
import json
import subprocess
import sys

import pytest

from livepatch import cli
from livepatch.client import commands, quickstatus
from livepatch.kernel import ModuleInUse
from tests.unit.client.fakes import World, patch


@pytest.fixture
def wired(world: World, monkeypatch):
    """The CLI with the fake world as its runtime, as root."""
    monkeypatch.setattr(cli, "_runtime", world.runtime)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("LIVEPATCH_STATE_DIR", str(world.paths.root))
    monkeypatch.setenv("NO_COLOR", "1")
    return world


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert "livepatch 0.1.0" in capsys.readouterr().out


def test_unknown_command_and_missing_token_are_usage_errors(capsys):
    for argv in (["frobnicate"], ["enable"], ["status", "--format", "xml"]):
        with pytest.raises(SystemExit) as caught:
            cli.main(argv)
        assert caught.value.code == 2
    capsys.readouterr()


def test_status_when_not_enabled(wired, capsys):
    code, out, err = run(capsys, "status")
    assert code == 1 and out == ""
    assert "Machine is not enabled" in err


def test_status_json_when_not_enabled_still_prints_the_document(wired, capsys):
    code, out, err = run(capsys, "status", "--format", "json")
    assert code == 1 and "Machine is not enabled" in err
    assert json.loads(out)["Enrolled"] is False


def test_the_fast_paths_not_enabled_sentence_is_the_error_classs():
    from livepatch.client.errors import NotEnabled

    assert str(NotEnabled()) == cli.NOT_ENABLED
    assert cli.NOT_ENABLED_EXIT == NotEnabled().exit_code == 1


def test_status_not_enabled_says_the_same_on_the_fast_and_the_full_path(wired, capsys, monkeypatch):
    formats = ([], ["--format", "json"], ["--format", "yaml"])
    fast = [run(capsys, "status", *f) for f in formats]
    monkeypatch.setattr(quickstatus, "build", lambda *args: None)  # unsure: the full path
    full = [run(capsys, "status", *f) for f in formats]  # (the fake world's host facts)
    sentence = f"livepatch: {cli.NOT_ENABLED}\n"
    assert [(code, err) for code, _, err in fast + full] == [(1, sentence)] * 6
    assert fast[0][1] == full[0][1] == ""
    assert json.loads(fast[1][1])["Enrolled"] is json.loads(full[1][1])["Enrolled"] is False
    assert "Enrolled: false" in fast[2][1] and "Enrolled: false" in full[2][1]


def test_enable_status_refresh_disable(wired, capsys):
    wired.metadata.patches_list = [patch("3")]
    code, out, err = run(capsys, "enable", "good-token")
    assert code == 0, err
    assert "Machine enabled" in out
    assert "patch state: ✓ all applicable livepatch modules applied" in out
    assert "good-token" not in out + err

    code, out, err = run(capsys, "status", "--format", "humane")
    assert code == 0
    assert "kernel: 6.1.0-56-amd64" in out.splitlines()
    assert "daemon is not running" in err
    for line in out.splitlines():
        assert ": " in line

    code, out, _ = run(capsys, "status", "--verbose", "--format", "json")
    assert json.loads(out)["Status"][0]["Livepatch"]["Fixes"][0]["Patched"] is True

    code, out, _ = run(capsys, "status", "--format", "yaml")
    assert "Kernel: 6.1.0-56-amd64" in out

    wired.metadata.down = 1
    code, out, err = run(capsys, "refresh")
    assert code == 1 and "Cannot reach the patch service" in err
    code, out, err = run(capsys, "refresh")
    assert code == 0 and "patch state:" in out

    code, out, err = run(capsys, "disable")
    assert code == 0
    assert "Loaded patches stay in the kernel" in out
    assert "--unload" in out


def test_disable_unload_refused_exits_non_zero_with_one_sentence_per_patch(wired, capsys):
    wired.metadata.patches_list = [patch("3")]
    assert run(capsys, "enable", "good-token")[0] == 0
    name = patch("3").module_name
    wired.kernel.refuse_unload = {name: ModuleInUse(name, errno=errno.EBUSY, refcount=1)}
    code, out, err = run(capsys, "disable", "--unload")
    assert code == 1
    assert "Machine disabled; it no longer checks for patches." in out
    assert "--unload" not in out  # no advice to do what just failed
    assert err.splitlines() == [
        f"livepatch: Livepatch {name} stays loaded until the next reboot: the kernel refused "
        "to unload it (module-in-use)."
    ]
    code, _, err = run(capsys, "disable", "--unload")
    assert code == 1 and "Machine is not enabled" in err  # the de-enrolment did happen


def test_disable_while_the_service_is_down_says_the_credential_is_kept(wired, capsys):
    assert run(capsys, "enable", "good-token")[0] == 0
    wired.service.down = 1
    code, out, err = run(capsys, "disable")
    assert code == 0 and "Machine disabled" in out
    assert err.splitlines() == [
        "livepatch: the patch service was not told (Cannot reach the patch service at "
        "https://patches.test (connection refused); check the network, the proxy settings "
        "and remote-server); the machine keeps its credential so that `livepatch enable` "
        "can prove it is this machine: enable and disable it again once the service is "
        "reachable to free its slot."
    ]


def test_bad_token_message(wired, capsys):
    code, _, err = run(capsys, "enable", "wrong")
    assert code == 1
    assert "Unknown Auth-Token" in err
    assert "wrong" not in err
    assert "Traceback" not in err


def test_unsupported_kernel_message(wired, capsys):
    wired.kernel.unsupported = "no livepatch support."
    code, _, err = run(capsys, "enable", "good-token")
    assert code == 1 and "unsupported kernel" in err


def test_commands_that_need_root_say_so(wired, monkeypatch, capsys):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    for argv in (["enable", "t"], ["disable"], ["refresh"], ["daemon"]):
        code, _, err = run(capsys, *argv)
        assert code == 4
        expected = f"livepatch: `livepatch {argv[0]}` needs root; run it again with sudo."
        assert err.strip() == expected
    code, _, err = run(capsys, "config", "tier=stable")
    assert code == 4
    assert err.strip() == (
        "livepatch: `livepatch config` needs root to change settings; run it again with sudo."
    )


def test_config_set_and_show(wired, capsys):
    code, _, err = run(capsys, "config", "check-interval=15", "http-proxy=http://p.test:3128")
    assert code == 0, err
    code, out, _ = run(capsys, "config")
    assert "check-interval: 15" in out.splitlines()
    assert "http-proxy: http://p.test:3128" in out.splitlines()
    code, _, _ = run(capsys, "config", "http-proxy=")
    code, out, _ = run(capsys, "config")
    assert "http-proxy: " in out.splitlines()


def test_config_errors_are_one_sentence(wired, capsys):
    code, _, err = run(capsys, "config", "check-interval=-3")
    assert code == 2
    assert err.count("\n") == 1 and "whole number of minutes" in err


def test_unexpected_errors_hide_the_traceback_unless_debug(wired, monkeypatch, capsys):
    def boom(rt):
        raise RuntimeError("bug")

    monkeypatch.setattr(commands, "status", boom)
    monkeypatch.setattr(quickstatus, "build", lambda *args: None)  # unsure: the full path
    code, _, err = run(capsys, "status")
    assert code == 70 and "Traceback" not in err and "--debug" in err
    code, _, err = run(capsys, "--debug", "status")
    assert code == 70 and "Traceback" in err


def test_status_path_imports_no_heavy_modules(tmp_path):
    probe = (
        "import sys\n"
        "from livepatch import cli\n"
        "try:\n    cli.main(['status', '--format', 'json'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('requests', 'cryptography', 'tuf', 'dbus_fast', 'asyncio', 'yaml')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"LIVEPATCH_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "HEAVY []" in result.stderr, result.stderr


def test_notifier_hands_its_options_to_the_agent(monkeypatch):
    import livepatch.dbus.notifier as agent

    calls: list[list[str]] = []
    monkeypatch.setattr(agent, "main", lambda argv: calls.append(list(argv)) or 0)
    assert cli.main(["notifier", "--coalesce", "3", "--state", "/tmp/n.json"]) == 0
    assert cli.main(["--debug", "notifier", "--retry", "5"]) == 0
    assert calls == [
        ["--coalesce", "3", "--state", "/tmp/n.json"],
        ["--retry", "5", "--debug"],
    ]


def test_other_commands_still_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["status", "--coalesce", "3"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --coalesce 3" in capsys.readouterr().err


def test_notifier_help_is_the_agents_own():
    result = subprocess.run(
        [sys.executable, "-m", "livepatch.cli", "notifier", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: livepatch notifier")
    assert "--coalesce SECONDS" in result.stdout


def test_check_in_imports_leave_boto3_out_but_importable():
    probe = (
        "import sys\n"
        "import livepatch.client.metadata, livepatch.client.api\n"
        "print(sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules))\n"
        "import boto3\n"
        "print(boto3.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.stdout.splitlines() == ["[]", "boto3"], result.stderr


def test_enable_reads_the_token_from_stdin_or_a_file(wired, capsys, monkeypatch, tmp_path):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"good-token\n")))
    code, out, err = run(capsys, "enable", "--token-file", "-")
    assert code == 0, err
    assert "Machine enabled" in out
    assert run(capsys, "disable")[0] == 0
    token = tmp_path / "token"
    token.write_text("good-token\n")
    code, out, err = run(capsys, "enable", "--token-file", str(token))
    assert code == 0, err
    assert "Machine enabled" in out
    assert "good-token" not in out + err


def test_refresh_through_a_daemon_blocked_by_a_missing_plug_prints_its_sentence(
    wired, monkeypatch, capsys
):
    """Seen under the real snapd: livepatch-sysfs disconnected under a running daemon, whose
    answer is the blocked document (no kernel status); the CLI says which plug, nothing else."""
    from pathlib import Path

    from livepatch.client.blocked import blocked_document
    from livepatch.errors import LivepatchError
    from livepatch.kernel.errors import AccessDenied

    denied = AccessDenied(Path("/sys/kernel/livepatch"), "livepatch-sysfs", errno=13)
    doc = blocked_document(Path("/nonexistent"), denied, daemon_running=True)
    failure = LivepatchError(str(denied), code=denied.code)
    monkeypatch.setattr(commands, "refresh", lambda rt: (doc, failure))
    assert cli.main(["refresh"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"livepatch: {denied}\n"
    assert "(sudo snap connect livepatch:livepatch-sysfs)" in err
