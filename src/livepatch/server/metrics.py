"""Prometheus text exposition of the service's counters and gauges.

The request counters (`COUNTERS`) are counted in memory by each process, an
increment under a lock on the hot paths. ``livepatch-server serve`` runs
several API worker processes and a scrape reaches one of them, so that
/metrics shows the server's totals, each worker shares its counts (`share`):
a thread writes them, when they changed, about once a second (and on
`close`, at exit) to a file of its own in a directory the supervisor
empties at start, replacing it atomically; /metrics writes its own process's
file and sums all of them. A restart starts the counters at zero, as
Prometheus expects of a counter; a worker that exited or was replaced keeps
its last counts in the sum, so totals never go down while the server runs.
At most the last second of a worker killed outright is lost.

Promotions and halts (given to `render` as `counters`, since
``livepatch-admin`` makes them too) and gauges such as enrolled machines
come from the database at scrape time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, str, Mapping[Labels, float]]
"""A metric as (name, help, {labels: value})."""
Counts = dict[str, dict[Labels, float]]
"""The `COUNTERS` of one process (or summed): {name: {labels: value}}."""

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
SUFFIX = ".json"

COUNTERS: dict[str, str] = {
    "livepatch_enrolments_total": "Successful machine enrolments.",
    "livepatch_enrolment_refusals_total": "Refused enrolments, by error code.",
    "livepatch_checkins_total": "Metadata requests made with a machine credential.",
    "livepatch_reports_total": "Apply outcomes reported by machines, by result.",
    "livepatch_static_requests_total": "Metadata and blob requests, by status.",
    "livepatch_duplicate_enrolments_total": (
        "Enrolments of a known machine id without proof (cloned images or impostors)."
    ),
    "livepatch_report_refusals_total": "Reports refused, by error code.",
    "livepatch_rate_limited_total": "Requests refused with 429, by endpoint.",
    "livepatch_kernel_changes_total": "Machines that told the service they booted another kernel.",
}


class Metrics:
    """Thread-safe counters with labels, this process's or (once shared) the server's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counts = {name: {} for name in COUNTERS}
        self._share: _Share | None = None

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def counter(self, name: str, **labels: str) -> Callable[[], None]:
        """An increment-by-one of one series, with its labels resolved once (for hot paths)."""
        series = self._values[name]
        key = tuple(sorted(labels.items()))
        lock = self._lock

        def increment() -> None:
            with lock:
                series[key] = series.get(key, 0.0) + 1.0

        return increment

    def value(self, name: str, **labels: str) -> float:
        """This process's count of one series."""
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def snapshot(self) -> Counts:
        """A copy of this process's counts."""
        with self._lock:
            return {name: dict(series) for name, series in self._values.items()}

    def share(self, directory: Path, *, every: float = FLUSH_SECONDS) -> None:
        """Write this process's counts to a file of its own in `directory` from now on.

        The file is written now and then whenever the counts changed, every
        `every` seconds, until `close`; `render` sums the directory's files.
        """
        if self._share is not None:
            raise RuntimeError("The metrics are already shared.")
        self._share = _Share(self, directory, every)

    def close(self) -> None:
        """Stop sharing, writing the counts a last time."""
        if self._share is not None:
            self._share.close()

    def totals(self) -> Counts:
        """The counts of every process sharing the directory, or this process's alone."""
        if self._share is None:
            return self.snapshot()
        return self._share.totals()

    def render(
        self,
        gauges: Iterable[Series] = (),
        counters: Iterable[Series] = (),
    ) -> str:
        """The exposition text; `gauges` and `counters` are (name, help, {labels: value}).

        `counters` are counted elsewhere (the database), rendered after the
        processes' own (see `totals`).
        """
        lines: list[str] = []
        snapshot = self.totals()
        for name, help_text in COUNTERS.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            series = snapshot[name] or {(): 0.0}
            lines += [_sample(name, labels, value) for labels, value in sorted(series.items())]
        for name, help_text, values in counters:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            samples = values or {(): 0.0}
            lines += [_sample(name, labels, value) for labels, value in sorted(samples.items())]
        for name, help_text, values in gauges:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [_sample(name, labels, value) for labels, value in sorted(values.items())]
        return "\n".join(lines) + "\n"


def _sample(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        name = f"{name}{{{inner}}}"
    number = str(int(value)) if value.is_integer() else repr(value)
    return f"{name} {number}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Share:
    """The writer of one process's counts file, and the reader of everyone's."""

    def __init__(self, metrics: Metrics, directory: Path, every: float) -> None:
        self.metrics = metrics
        self.directory = directory
        # The pid names the writer for people; the random part keeps a reused pid apart.
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        self._temporary = directory / f".{self.path.name}.tmp"
        self._write_lock = threading.Lock()
        self._written: Counts | None = None
        self._failing = False
        self._stop = threading.Event()
        self.write()
        self._thread = threading.Thread(
            target=self._run, args=(every,), name="livepatch-metrics", daemon=True
        )
        self._thread.start()

    def write(self) -> Counts:
        """Write the counts if they changed since last time; the counts."""
        with self._write_lock:
            counts = self.metrics.snapshot()
            if counts != self._written:
                try:
                    self._temporary.write_text(encode(counts))
                    os.replace(self._temporary, self.path)
                except OSError as error:
                    if not self._failing:
                        log.warning("cannot write the metrics file %s: %s", self.path, error)
                    self._failing = True
                else:
                    self._written = counts
                    self._failing = False
            return counts

    def totals(self) -> Counts:
        own = self.write()
        others = [counts for path, counts in read_directory(self.directory) if path != self.path]
        return add(own, *others)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.write()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.write()


def encode(counts: Counts) -> str:
    """A counts file's text: {name: [[[[label, value], ...], count], ...]}."""
    document = {
        name: [[[list(pair) for pair in labels], value] for labels, value in series.items()]
        for name, series in counts.items()
        if series
    }
    return json.dumps(document, separators=(",", ":"))


def decode(text: str) -> Counts:
    """The counts of a file `encode` wrote; ValueError if it is not one.

    Series of metrics other than `COUNTERS` are left out.
    """
    document: Any = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    counts: Counts = {}
    for name, samples in document.items():
        if name not in COUNTERS:
            continue
        series = counts.setdefault(name, {})
        try:
            for labels, value in samples:
                key = tuple((str(k), str(v)) for k, v in labels)
                series[key] = series.get(key, 0.0) + float(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"a malformed {name} series: {error}") from error
    return counts


def read_directory(directory: Path) -> list[tuple[Path, Counts]]:
    """Each process's counts file in `directory` with its counts (unreadable ones skipped)."""
    found: list[tuple[Path, Counts]] = []
    try:
        paths = sorted(p for p in directory.iterdir() if _is_counts(p.name))
    except OSError as error:
        log.warning("cannot list the metrics directory %s: %s", directory, error)
        return found
    for path in paths:
        try:
            found.append((path, decode(path.read_text())))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as error:
            log.warning("skipping the metrics file %s: %s", path, error)
    return found


def reset_directory(directory: Path) -> None:
    """Create `directory` for `Metrics.share`, or empty it of counts files (a fresh start)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    for path in directory.iterdir():
        if _is_counts(path.name) or path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


def add(*counts: Counts) -> Counts:
    """The sum of several processes' counts, with every name of `COUNTERS`."""
    total: Counts = {name: {} for name in COUNTERS}
    for one in counts:
        for name, series in one.items():
            into = total.setdefault(name, {})
            for labels, value in series.items():
                into[labels] = into.get(labels, 0.0) + value
    return total


def _is_counts(name: str) -> bool:
    return name.endswith(SUFFIX) and not name.startswith(".")
