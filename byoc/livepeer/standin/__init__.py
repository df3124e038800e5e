"""Local stand-ins for go-livepeer, so everything runs on one machine without a Livepeer node.

The runner never needs these in production: the orchestrator (``orchestrator``) and its trickle
server (``trickle_server`` over ``trickle_channel``) serve the tests, the benchmarks and users trying
the runner locally (``comfystream-byoc orchestrator`` or ``serve --with-orchestrator``).
"""
