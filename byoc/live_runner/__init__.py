"""go-livepeer's Live Runner control plane: heartbeat registration, the orchestrator-to-runner
channel, app sessions reached through the orchestrator's session proxy.

A thin layer over the same session table, stream manager and workers as BYOC: it turns app API
requests into the same ``StreamSpec`` starts, so no worker learns which control plane started a
stream. ``byoc.live_runner.control_plane.LiveRunnerControlPlane`` assembles the parts.
"""
