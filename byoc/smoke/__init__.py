"""``comfystream-byoc smoke``: a one-command check of a deployment.

Starts a live stream the way a gateway does (through an orchestrator's BYOC stream API, or
straight on a runner with channels on a trickle server of our own), publishes a generated clip
whose frames carry a counter, reads the processed output back, and reports frames in and out,
glass-to-glass latency percentiles and the time to the first frame. A client of the runner: it
uses the Livepeer wire protocols (and the stand-in's trickle server), its own sender
(``live_ts``, FFmpeg's encoder and muxer) and viewer (``segment_decoder``, on the ingest's
demuxer and decoders), egress's MP4 writer, never the parent app; the runner never imports it.
"""
