from __future__ import annotations

from livepatch.server.metrics import Metrics


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
