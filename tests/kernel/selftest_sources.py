"""The kernel's own livepatch selftests, from Debian's linux-source tarball.

Only lib/livepatch (the test_klp_* modules) and the selftest scripts are
extracted, once, into ~/.cache/livepatch/selftests/<key of the tarball>/; a
Kbuild file turns the modules into an external-module build.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
TOP = "linux-source-6.1"
CACHE = Path.home() / ".cache" / "livepatch" / "selftests"
MODULES = (
    "test_klp_atomic_replace",
    "test_klp_callbacks_demo",
    "test_klp_callbacks_demo2",
    "test_klp_callbacks_busy",
    "test_klp_callbacks_mod",
    "test_klp_livepatch",
    "test_klp_shadow_vars",
    "test_klp_state",
    "test_klp_state2",
    "test_klp_state3",
)


def extract(tarball: Path = TARBALL) -> Path:
    """The extracted tree (modules/ with a Kbuild, scripts/), cached by tarball identity."""
    stat = tarball.stat()
    target = CACHE / f"{stat.st_size}-{int(stat.st_mtime)}"
    if target.is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        subprocess.run(
            [
                "tar",
                "-xf",
                str(tarball),
                "-C",
                work,
                f"{TOP}/lib/livepatch",
                f"{TOP}/tools/testing/selftests/livepatch",
            ],
            check=True,
        )
        staging = Path(work) / "tree"
        (staging / "modules").mkdir(parents=True)
        for name in MODULES:
            shutil.copy2(Path(work) / TOP / "lib/livepatch" / f"{name}.c", staging / "modules")
        objects = " ".join(f"{name}.o" for name in MODULES)
        (staging / "modules" / "Kbuild").write_text(f"obj-m += {objects}\n")
        shutil.copytree(Path(work) / TOP / "tools/testing/selftests/livepatch", staging / "scripts")
        staging.rename(target)
    return target


ASSIGNMENT = re.compile(r"^(MOD_\w+)=(\S+)$", re.MULTILINE)


def _tests(script: str) -> dict[str, tuple[int, int]]:
    """{test name: (start, end) of its part of the script}, one per start_test."""
    starts = list(re.finditer(r'^start_test "(.*?)"', script, re.MULTILINE))
    ends = [match.start() for match in starts[1:]] + [len(script)]
    return {match.group(1): (match.end(), end) for match, end in zip(starts, ends, strict=True)}


def _expand(text: str, script: str, position: int) -> str:
    """`text` with each $MOD_* as last assigned before `position` (test-sysfs.sh reassigns)."""
    variables = dict(ASSIGNMENT.findall(script, 0, position))
    # Longest first, so $MOD_TARGET does not eat the start of $MOD_TARGET_BUSY.
    for variable, value in sorted(variables.items(), key=lambda item: -len(item[0])):
        text = text.replace("${" + variable + "}", value).replace("$" + variable, value)
    return text


def expected_logs(script: str) -> dict[str, str]:
    """{test name: expected kernel log} from a selftest script's check_result calls."""
    expected = {}
    check = re.compile(r'^check_result "(.*?)"\s*$', re.DOTALL | re.MULTILINE)
    for name, (start, end) in _tests(script).items():
        match = check.search(script, start, end)
        if match is None:
            continue
        text = _expand(match.group(1), script, match.start())
        # Inside bash double quotes a backslash escapes $ ` " \ (test-ftrace.sh: \").
        expected[name] = re.sub(r'\\([$`"\\])', r"\1", text)
    return expected


def sysfs_checks(script: str) -> dict[str, list[list[str]]]:
    """{test name: [[rights|value, patch, relative path, expected], ...]} in script order."""
    checks: dict[str, list[list[str]]] = {}
    line = re.compile(r"^check_sysfs_(rights|value)\s+(.*)$", re.MULTILINE)
    for name, (start, end) in _tests(script).items():
        for match in line.finditer(script, start, end):
            arguments = shlex.split(_expand(match.group(2), script, match.start()))
            checks.setdefault(name, []).append([match.group(1), *arguments])
    return checks
