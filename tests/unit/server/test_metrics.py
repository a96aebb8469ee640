from __future__ import annotations

import time
from pathlib import Path

import pytest

from livepatch.server.metrics import Metrics, add, decode, encode, read_directory, reset_directory


def test_exposition_has_help_type_and_labelled_samples() -> None:
    metrics = Metrics()
    metrics.inc("livepatch_reports_total", result="failed")
    metrics.inc("livepatch_reports_total", result="failed")
    metrics.inc("livepatch_reports_total", result="applied")
    text = metrics.render([("livepatch_machines", "Machines.", {(("tier", 'a"b'),): 3.0})])
    assert "# TYPE livepatch_reports_total counter" in text
    assert 'livepatch_reports_total{result="failed"} 2\n' in text
    assert 'livepatch_reports_total{result="applied"} 1\n' in text
    assert "livepatch_enrolments_total 0\n" in text
    assert '# TYPE livepatch_machines gauge\nlivepatch_machines{tier="a\\"b"} 3\n' in text
    assert metrics.value("livepatch_reports_total", result="failed") == 2


def test_counters_counted_elsewhere_are_rendered_as_counters() -> None:
    metrics = Metrics()
    labels = (("stage", "canary"), ("trigger", "manual"))
    text = metrics.render(
        counters=[
            ("livepatch_halts_total", "Halts.", {labels: 2.0}),
            ("livepatch_promotions_total", "Promotions.", {}),
        ]
    )
    assert (
        "# TYPE livepatch_halts_total counter\n"
        'livepatch_halts_total{stage="canary",trigger="manual"} 2\n'
    ) in text
    assert "# TYPE livepatch_promotions_total counter\nlivepatch_promotions_total 0\n" in text
    assert text.count("# TYPE livepatch_halts_total") == 1


def test_shared_counters_are_summed_over_the_processes_of_a_directory(tmp_path: Path) -> None:
    """Each worker process writes its counts to its own file; a scrape of any sums them all."""
    reset_directory(tmp_path)
    first, second = Metrics(), Metrics()
    first.share(tmp_path, every=3600)  # no periodic writes: only those of share/render/close
    second.share(tmp_path, every=3600)
    try:
        assert len(list(tmp_path.glob("*.json"))) == 2  # written at once: both are known
        first.inc("livepatch_enrolments_total")
        first.inc("livepatch_reports_total", result="failed")
        count = second.counter("livepatch_static_requests_total", status="200")
        count()
        count()
        second.inc("livepatch_reports_total", result="failed")
        # A scrape writes its own process's counts; the other's are as last written.
        assert "livepatch_enrolments_total 1\n" in first.render()
        text = second.render()
        assert "livepatch_enrolments_total 1\n" in text
        assert 'livepatch_reports_total{result="failed"} 2\n' in text
        assert 'livepatch_static_requests_total{status="200"} 2\n' in text
        assert second.value("livepatch_reports_total", result="failed") == 1  # its own
    finally:
        first.close()
        second.close()
    # Closing writes a last time; the files stay, so totals do not drop when a worker goes.
    counts = read_directory(tmp_path)
    assert len(counts) == 2
    assert add(*(c for _, c in counts))["livepatch_static_requests_total"] == {
        (("status", "200"),): 2.0
    }


def test_shared_counters_are_written_periodically_and_at_close(tmp_path: Path) -> None:
    reset_directory(tmp_path)
    metrics = Metrics()
    metrics.share(tmp_path, every=0.05)
    try:
        [(path, counts)] = read_directory(tmp_path)
        assert counts == {}
        metrics.inc("livepatch_checkins_total")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not read_directory(tmp_path)[0][1]:
            time.sleep(0.02)
        assert read_directory(tmp_path) == [(path, {"livepatch_checkins_total": {(): 1.0}})]
        written = path.stat().st_mtime_ns
        time.sleep(0.2)
        assert path.stat().st_mtime_ns == written  # unchanged counts are not written again
        metrics.inc("livepatch_checkins_total")
    finally:
        metrics.close()
    assert read_directory(tmp_path) == [(path, {"livepatch_checkins_total": {(): 2.0}})]
    assert not [p for p in tmp_path.iterdir() if p != path]  # no temporary file left


def test_a_fresh_start_empties_the_directory_and_bad_files_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "123-old.json").write_text('{"livepatch_enrolments_total": [[[], 7]]}')
    (tmp_path / ".123-old.json.tmp").write_text("{")
    reset_directory(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "1-garbled.json").write_text("{")
    (tmp_path / "2-wrong.json").write_text('{"livepatch_enrolments_total": [[1, 2, 3]]}')
    (tmp_path / "3-other.json").write_text(
        '{"livepatch_enrolments_total": [[[], 2]], "something_else": 5}'
    )
    metrics = Metrics()
    metrics.share(tmp_path, every=3600)
    try:
        metrics.inc("livepatch_enrolments_total")
        assert "livepatch_enrolments_total 3\n" in metrics.render()
    finally:
        metrics.close()
    assert "skipping the metrics file" in caplog.text
    assert "1-garbled.json" in caplog.text and "2-wrong.json" in caplog.text


def test_an_unwritable_directory_leaves_the_process_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "gone"
    metrics = Metrics()
    metrics.share(gone, every=3600)
    try:
        metrics.inc("livepatch_enrolments_total")
        assert "livepatch_enrolments_total 1\n" in metrics.render()
    finally:
        metrics.close()
    assert "cannot write the metrics file" in caplog.text
    assert caplog.text.count("cannot write the metrics file") == 1  # once, not every second


def test_counts_files_round_trip() -> None:
    counts = {
        "livepatch_enrolment_refusals_total": {(("code", 'a"b'),): 3.0},
        "livepatch_reports_total": {(("result", "applied"),): 1.0, (("result", "failed"),): 2.0},
    }
    assert decode(encode(counts)) == counts
    with pytest.raises(ValueError):
        decode("[]")
