"""A local stand-in for a go-livepeer orchestrator, faithful to go-livepeer's code for BYOC:

- ``/capability/register`` and ``/capability/unregister`` (``registry``);
- ``/process/request/{...}`` proxied to the registered worker (``jobs``);
- ``/ai/stream/start|update|stop`` with the five trickle channels per stream and the gateway's
  control keepalive (``streams``);
- a trickle server at ``/ai/trickle/``, over HTTP or HTTPS (``server``).

Run it with ``comfystream-byoc orchestrator``.
"""

from byoc.livepeer.standin.orchestrator.server import DEFAULT_PORT, LocalOrchestrator

__all__ = ["DEFAULT_PORT", "LocalOrchestrator"]
