"""Checks of the compose stack that schema validation cannot make, on the configuration Docker
Compose resolved (``docker compose config --format json`` on stdin):

- the four services exist; the orchestrator runs offchain with the secret the runner registers with;
- the runner registers with that orchestrator and gives it a URL on the compose network;
- every runner and ``register`` variable is one the runner reads (a typo would be ignored silently);
- ``/dev/shm`` holds the frame rings of every stream the runner accepts;
- ``stop_grace_period`` covers the drain and the shutdown that SIGTERM starts;
- the runner's state directory is on a volume (sessions survive a new container);
- the GPU is reserved (unless ``--cpu``), and ``register`` waits for a healthy runner.

Run from the repository root with the runner's environment (it reads ``byoc.settings``):
``... config --format json | .venv/bin/python docker/check_compose.py [--cpu]``.
Exits 1 with one line per problem.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

sys.path.insert(0, ".")
from byoc.settings import OPTIONS

# The runner's default ring geometry (RING_SLOTS, RING_MAX_WIDTH x RING_MAX_HEIGHT, ipc.ring's
# slot header); a test keeps these equal to the code. The runner's environment may override them.
RING_SLOTS = 4
MIN_RING_PIXELS = 1920 * 1080
SLOT_HEADER_BYTES = 192
STREAM_SHM_BYTES = 2 * RING_SLOTS * (MIN_RING_PIXELS * 3 // 2 + SLOT_HEADER_BYTES)
UNREGISTER_MARGIN_S = 10.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def go_duration_s(text: str) -> float:
    """Seconds in a Go duration string as compose prints it (``1m0s``)."""
    return sum(float(value) * _UNIT_S[unit] for value, unit in _DURATION.findall(text))


def flag_value(command: list[str], flag: str) -> str | None:
    for item in command:
        if item.startswith(f"{flag}="):
            return item.split("=", 1)[1]
    return None


def problems(config: dict[str, Any], *, gpu: bool) -> list[str]:
    found: list[str] = []
    services = config.get("services", {})
    missing = {"orchestrator", "gateway", "runner", "register"} - set(services)
    if missing:
        return [f"services missing: {', '.join(sorted(missing))}"]
    orch, runner, register = services["orchestrator"], services["runner"], services["register"]
    env = runner.get("environment") or {}
    known = {name for option in OPTIONS for name in option.env}
    for service_name, service in (("runner", runner), ("register", register)):
        unknown = set(service.get("environment") or {}) - known
        if unknown:
            found.append(f"{service_name}: variables the runner does not read: {sorted(unknown)}")
    command = orch.get("command") or []
    if flag_value(command, "-network") != "offchain":
        found.append("orchestrator: not offchain")
    if flag_value(command, "-orchSecret") != env.get("ORCH_SECRET"):
        found.append("orchestrator -orchSecret differs from the runner's ORCH_SECRET")
    service_addr = flag_value(command, "-serviceAddr") or ""
    if env.get("ORCH_URL") != f"https://{service_addr}":
        found.append(
            f"runner ORCH_URL {env.get('ORCH_URL')} is not the orchestrator's {service_addr}"
        )
    if not str(env.get("CAPABILITY_URL", "")).startswith("http://runner:"):
        found.append("runner CAPABILITY_URL is not the runner's address on the compose network")
    capacity = int(env.get("CAPABILITY_CAPACITY") or 4)
    slots = int(env.get("RING_SLOTS") or RING_SLOTS)
    pixels = int(env.get("RING_MAX_WIDTH") or 1920) * int(env.get("RING_MAX_HEIGHT") or 1080)
    stream_bytes = 2 * slots * (pixels * 3 // 2 + SLOT_HEADER_BYTES)
    shm = int(runner.get("shm_size") or 64 * 2**20)
    if shm < capacity * stream_bytes:
        found.append(
            f"runner shm_size {shm} B holds fewer than {capacity} streams ({stream_bytes} B each)"
        )
    grace = go_duration_s(str(runner.get("stop_grace_period") or "10s"))
    shutdown = float(env.get("SHUTDOWN_TIMEOUT") or 5)
    drain = float(env.get("DRAIN_TIMEOUT") or 60)
    if grace < drain + shutdown + UNREGISTER_MARGIN_S:
        found.append(
            f"runner stop_grace_period {grace}s < DRAIN_TIMEOUT {drain}s + "
            f"SHUTDOWN_TIMEOUT {shutdown}s + {UNREGISTER_MARGIN_S}s"
        )
    state_dir = env.get("STATE_DIR")
    mounts = {v.get("target") for v in runner.get("volumes") or [] if v.get("type") == "volume"}
    if not state_dir or state_dir not in mounts:
        found.append("runner STATE_DIR is not on a volume: sessions would not survive a restart")
    devices = (((runner.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
        "devices"
    ) or []
    if gpu and not any("gpu" in (d.get("capabilities") or []) for d in devices):
        found.append("runner: no GPU reserved")
    if not gpu and devices:
        found.append("runner: a GPU is reserved in the CPU variant")
    if (register.get("command") or [None])[0] != "register":
        found.append("register: does not run 'comfystream-byoc register'")
    condition = ((register.get("depends_on") or {}).get("runner") or {}).get("condition")
    if condition != "service_healthy":
        found.append("register: does not wait for a healthy runner")
    return found


def main() -> int:
    config = json.load(sys.stdin)
    found = problems(config, gpu="--cpu" not in sys.argv[1:])
    for line in found:
        print(f"check_compose: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
