"""``comfystream-byoc smoke``: a one-command check of a deployment.

Starts a live stream the way a gateway does (through an orchestrator's BYOC stream API, or
straight on a runner with channels on a trickle server of our own), publishes a generated clip
whose frames carry a counter, reads the processed output back, and reports frames in and out,
glass-to-glass latency percentiles and the time to the first frame. A client of the runner: it
uses the Livepeer wire protocols and the media code of ingest (decode) and egress (encode, MP4),
never the parent app, and the runner never imports it.
"""
