"""Frame-latency benchmark: live streams through the runner end to end, against pytrickle.

``python -m benchmarks.latency`` runs N concurrent 512x512 30 fps streams of the test clip
through the full path — a source publishes MPEG-TS over trickle to the local orchestrator
stand-in, the runner's ingest, infer (an invert workflow) and egress workers process it, and a
viewer subscribes the output — and reads the clip's frame counter back from the output pixels
to time every frame. The same clip goes through pytrickle 0.1.6's own ``StreamProcessor`` (one
process per stream, in its own environment) through the same stand-in, in the same run.

Modules, one job each: ``source`` (real-time clip publisher, its own process), ``sink`` (output
subscriber and counter read-back), ``events`` (status events), ``cpu`` (``/proc`` CPU time),
``gateway`` (stream start/stop as a gateway), ``processes``/``runner``/``baseline`` (the
processes under test), ``pytrickle_invert`` (the baseline runner), ``phase`` (one stream
count through one system), ``analysis``/``figures`` (numbers), ``report``/``plot`` (outputs),
``machine`` (what it ran on), ``bench`` (the whole run).
"""
