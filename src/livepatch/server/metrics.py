"""Prometheus text exposition of the service's counters and gauges.

Counters are per process (each API worker exposes its own; Prometheus sums
them), except those given to `render` (promotions and halts, which
``livepatch-admin`` makes too): those and gauges such as enrolled machines
come from the database at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, str, Mapping[Labels, float]]
"""A metric as (name, help, {labels: value})."""

COUNTERS: dict[str, str] = {
    "livepatch_enrolments_total": "Successful machine enrolments.",
    "livepatch_enrolment_refusals_total": "Refused enrolments, by error code.",
    "livepatch_checkins_total": "Metadata requests made with a machine credential.",
    "livepatch_reports_total": "Apply outcomes reported by machines, by result.",
    "livepatch_static_requests_total": "Metadata and blob requests, by status.",
}


class Metrics:
    """Thread-safe counters with labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}

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
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0.0)

    def render(
        self,
        gauges: Iterable[Series] = (),
        counters: Iterable[Series] = (),
    ) -> str:
        """The exposition text; `gauges` and `counters` are (name, help, {labels: value}).

        `counters` are counted elsewhere (the database), rendered after this
        process's own.
        """
        lines: list[str] = []
        with self._lock:
            snapshot = {name: dict(series) for name, series in self._values.items()}
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
