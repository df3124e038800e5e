"""WebRTC glass-to-glass latency: an aiortc publisher -> WHIP -> invert -> WHEP -> aiortc viewers
through the runner's real processes, against a bare aiortc relay (no inference, one process)
measured in the same run; each with and without the runner's complete-frame jitter buffer; 1
and 4 viewers. Modules: ``peers`` (the harness's publisher and viewers, counter drawn and read back),
``relay`` (the baseline process), ``bench`` (the phases), ``report`` (targets and tables)."""
