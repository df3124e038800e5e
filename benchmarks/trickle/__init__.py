"""Trickle benchmarks: relay latency, fan-out throughput and server memory (``relay``), and
ingest decode latency and egress encode cost (``decode_latency``)."""
