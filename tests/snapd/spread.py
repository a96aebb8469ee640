"""Run the spread tasks (tests/spread/main/*/task.yaml) in the snapd test machine.

spread itself needs a spread-made machine and a Go toolchain; the tasks are plain
bash, so this reads spread.yaml and each task.yaml (they stay the single source)
and runs, in the guest, what spread would: the suite's prepare-each, the task's
prepare and execute, then (always) its restore and the suite's restore-each, with
debug-each's output added when the task failed. ``MATCH`` is spread's helper.

The patch service runs on the host (a TCG guest takes a minute to import it):
tests/spread/lib/service.sh, when LIVEPATCH_HOST_CALLS is set, sends `admin`,
`kernel_key` and `publish_sample_patch` to the host through the share
(``HostCalls``) instead of running a local service.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.snapd.machine import Machine, Result

REPO = Path(__file__).resolve().parents[2]
SUITE = "tests/spread/main/"
# spread's MATCH (spread/client.go): the pattern must (or with -v must not) occur.
MATCH = r"""
MATCH() {
    local stdin; stdin="$(cat)"
    if ! printf '%s\n' "$stdin" | grep -q -E "$@"; then
        echo "error: pattern not found (MATCH $*), got:" >&2
        printf '%s\n' "$stdin" >&2
        return 1
    fi
}
export -f MATCH
"""


@dataclass(frozen=True)
class Task:
    name: str
    summary: str
    sections: Mapping[str, str]
    backends: tuple[str, ...]


def suite() -> Mapping[str, str]:
    spread = yaml.safe_load((REPO / "spread.yaml").read_text())
    return dict(spread["suites"][SUITE])


def task(name: str) -> Task:
    data = yaml.safe_load((REPO / SUITE / name / "task.yaml").read_text())
    sections = {key: data[key] for key in ("prepare", "execute", "restore") if key in data}
    return Task(name, data["summary"], sections, tuple(data.get("backends") or ()))


def script(task: Task, environment: Mapping[str, str]) -> str:
    """One bash script: sections in spread's order, restore always, debug on failure."""
    suite_sections = suite()
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in environment.items())
    work = f"/root/spread-{task.name}"

    def file(label: str, body: str) -> str:
        # each section is its own bash process: `set -e` does not stop a subshell whose
        # status a `||` tests, so a failing line in the middle would go unnoticed
        return (
            f"cat > {work}/.{label}.sh <<'LIVEPATCH_SECTION_END'\ncd {work}\n{body}\n"
            "LIVEPATCH_SECTION_END\n"
        )

    def section(label: str, body: str | None) -> str:
        if not body:
            return ""
        return (
            f"echo '### {label}'\n{file(label, body)}"
            f"bash -eu {work}/.{label}.sh || {{ rc=$?; echo '### {label} failed: '$rc; "
            f"[ $status -ne 0 ] || status=$rc; }}\n"
        )

    def cleanup(label: str, body: str | None) -> str:
        if not body:
            return ""
        return (
            f"echo '### {label}'\n{file(label, body)}"
            f"bash {work}/.{label}.sh || echo '### {label} failed'\n"
        )

    body = [
        exports,
        MATCH,
        f"rm -rf {work}; mkdir -p {work}\nstatus=0\n",
        section("prepare-each", suite_sections.get("prepare-each")),
        f"if [ $status -eq 0 ]; then :\n{section('prepare', task.sections.get('prepare'))}fi\n",
        f"if [ $status -eq 0 ]; then :\n{section('execute', task.sections.get('execute'))}fi\n",
        f"if [ $status -ne 0 ]; then :\n{cleanup('debug-each', suite_sections.get('debug-each'))}"
        "fi\n",
        cleanup("restore", task.sections.get("restore")),
        cleanup("restore-each", suite_sections.get("restore-each")),
        "exit $status\n",
    ]
    return "".join(body)


def run(machine: Machine, task: Task, environment: Mapping[str, str], timeout: float) -> Result:
    return machine.run(script(task, environment), timeout=timeout)


Handler = Callable[[list[str]], tuple[int, str]]


class HostCalls:
    """Answers the guest's host_call requests (tests/spread/lib/service.sh) from a thread:
    share/host/ID.req holds NUL-separated arguments; the answer is ID.out, then ID.rc."""

    def __init__(self, directory: Path, handler: Handler) -> None:
        self.directory = directory
        self.handler = handler
        self.calls: list[list[str]] = []
        self._stop = threading.Event()
        directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def serving(self) -> Iterator[HostCalls]:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for request in sorted(self.directory.glob("*.req")):
                argv = [a for a in request.read_text().split("\0") if a]
                request.unlink()
                self.calls.append(argv)
                try:
                    code, output = self.handler(argv)
                except Exception as error:  # the guest sees it and fails its task
                    code, output = 1, f"host call {argv} failed: {error}\n"
                stem = request.with_suffix("")
                stem.with_suffix(".out").write_text(output)
                stem.with_suffix(".rc.tmp").write_text(str(code))
                stem.with_suffix(".rc.tmp").rename(stem.with_suffix(".rc"))
            time.sleep(0.1)
