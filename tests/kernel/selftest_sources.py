"""The kernel's own livepatch selftests, from Debian's linux-source tarball.

Only lib/livepatch (the test_klp_* modules) and the selftest scripts are
extracted, once, into ~/.cache/livepatch/selftests/<key of the tarball>/; a
Kbuild file turns the modules into an external-module build.
"""

from __future__ import annotations

import re
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


def expected_logs(script: str) -> dict[str, str]:
    """{test name: expected kernel log} from a selftest script's check_result calls."""
    variables = dict(re.findall(r"^(MOD_\w+)=(\S+)$", script, re.MULTILINE))
    expected = {}
    for section in re.split(r'^start_test "', script, flags=re.MULTILINE)[1:]:
        name, _, body = section.partition('"')
        match = re.search(r'check_result "(.*?)"\s*$', body, re.DOTALL | re.MULTILINE)
        if match is None:
            continue
        text = match.group(1)
        # Longest first, so $MOD_TARGET does not eat the start of $MOD_TARGET_BUSY.
        for variable, value in sorted(variables.items(), key=lambda item: -len(item[0])):
            text = text.replace("${" + variable + "}", value).replace("$" + variable, value)
        expected[name] = text
    return expected
