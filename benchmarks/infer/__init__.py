"""Inference engine benchmark: ``python -m benchmarks.infer [--quick]``."""
