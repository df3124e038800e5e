"""Synthetic test media shared by the test suite and the benchmarks."""
