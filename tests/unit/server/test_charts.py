"""The dashboard's hand-made SVG charts: sizes from counts, escaped labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from livepatch.server.ui import charts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_bars_scale_to_the_largest_count() -> None:
    svg = charts.bars([("a", 4), ("b", 2), ("c", 0)], title="Machines")
    # The plot spans CHART_WIDTH - LABEL_WIDTH - 50 = 290 pixels.
    assert 'width="290"' in svg and 'width="145"' in svg and 'width="0"' in svg
    assert 'height="72"' in svg  # three rows of 18 + 6
    assert svg.startswith("<svg") and "<title>Machines</title>" in svg


def test_labels_are_escaped() -> None:
    svg = charts.bars([("<script>", 1)], title='a"b')
    assert "<script>" not in svg and "&lt;script&gt;" in svg and 'aria-label="a&quot;b"' in svg


def test_nothing_to_draw_says_so() -> None:
    assert "nothing yet" in charts.bars([], title="Kernels")
    assert "no reports yet" in charts.progress({"applied": []}, title="p")


def test_progress_steps_through_cumulative_counts() -> None:
    applied = charts.cumulative([T0 + timedelta(hours=2), T0, T0 + timedelta(hours=1)])
    assert applied == [(T0, 1), (T0 + timedelta(hours=1), 2), (T0 + timedelta(hours=2), 3)]
    svg = charts.progress({"applied": applied}, title="p", markers=[(T0, "promotion moderate")])
    # x from 36 to 36 + (520 - 46) = 510 over two hours; y from 142 (0) to 16 (3).
    assert 'd="M36.0,142.0H36.0V100.0H273.0V58.0H510.0V16.0H510.0"' in svg
    assert 'text-anchor="start"' in svg and "promotion moderate" in svg
