"""spread.yaml and tests/spread cannot run here (no snapd); check what can be checked:
the YAML shape spread reads, every shell section parses, every helper a task
calls is defined, and the task list covers the lifecycle the issue names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
SPREAD = yaml.safe_load((REPO / "spread.yaml").read_text())
TASKS = sorted((REPO / "tests" / "spread").glob("*/*/task.yaml"))
LIBS = sorted((REPO / "tests" / "spread" / "lib").glob("*.sh"))
SECTIONS = ("prepare", "execute", "restore", "debug", "prepare-each", "restore-each", "debug-each")


def helpers() -> set[str]:
    names: set[str] = set()
    for lib in LIBS:
        names |= set(re.findall(r"^([a-z_]+)\(\) \{", lib.read_text(), re.MULTILINE))
    return names


def scripts() -> list[tuple[str, str]]:
    found = [(f"spread.yaml {key}", SPREAD[key]) for key in SECTIONS if key in SPREAD]
    for suite, body in SPREAD["suites"].items():
        found += [(f"{suite} {key}", body[key]) for key in SECTIONS if key in body]
    for task in TASKS:
        data = yaml.safe_load(task.read_text())
        found += [(f"{task.relative_to(REPO)} {key}", data[key]) for key in SECTIONS if key in data]
    return found


def test_the_project_declares_backends_and_the_suite():
    assert SPREAD["project"] == "livepatch"
    assert set(SPREAD["backends"]) == {"qemu", "lxd"}
    assert list(SPREAD["suites"]) == ["tests/spread/main/"]


def test_the_tasks_cover_the_snap_lifecycle():
    names = {task.parent.name for task in TASKS}
    assert names == {
        "install",
        "configure",
        "enable",
        "confinement",
        "plugs",
        "health",
        "motd",
        "pre-refresh",
        "refresh-revert",
        "remove",
    }


@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.parent.name)
def test_each_task_has_a_summary_an_execute_and_known_backends(task):
    data = yaml.safe_load(task.read_text())
    assert data["summary"] and data["execute"]
    assert set(data.get("backends", [])) <= set(SPREAD["backends"])


def test_tasks_that_load_a_patch_run_only_in_a_vm():
    for task in TASKS:
        text = task.read_text()
        if "publish_sample_patch" in text:
            assert yaml.safe_load(text)["backends"] == ["qemu"], task


@pytest.mark.parametrize(("where", "script"), scripts(), ids=lambda v: str(v)[:60])
def test_every_script_parses_as_bash(where, script):
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, f"{where}: {done.stderr}"


def test_every_helper_a_task_calls_is_defined():
    defined = helpers()
    called: set[str] = set()
    for _, script in scripts():
        called |= set(re.findall(r"(?:^|[\s$(|])([a-z]+_[a-z_]+)\b", script))
    assert "publish_sample_patch" in called and "install_livepatch" in called
    assert called <= defined, called - defined


def test_the_libraries_parse_as_bash():
    for lib in LIBS:
        done = subprocess.run(["bash", "-n", str(lib)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
