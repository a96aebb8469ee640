"""Benchmarks. Each ``bench/bench_*.py`` has ``main() -> None`` and records
its figures with :func:`bench.results.record`."""
