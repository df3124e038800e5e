"""The compose checks of ``docker/check_compose.py`` (run by ``make check-docker`` on what Docker
Compose resolved): each rule fires on a configuration that breaks it, and the ring geometry they
assume is the runner's."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from byoc.settings import Settings
from ipc.ring import SLOT_HEADER_SIZE

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_compose", ROOT / "docker/check_compose.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load()

GOOD: dict[str, Any] = {
    "services": {
        "orchestrator": {
            "command": [
                "-orchestrator",
                "-network=offchain",
                "-serviceAddr=orchestrator:8935",
                "-orchSecret=s3",
            ]
        },
        "gateway": {"command": ["-gateway"]},
        "runner": {
            "environment": {
                "ORCH_URL": "https://orchestrator:8935",
                "ORCH_SECRET": "s3",
                "CAPABILITY_URL": "http://runner:8889",
                "CAPABILITY_CAPACITY": "2",
                "SHUTDOWN_TIMEOUT": "5",
                "DRAIN_TIMEOUT": "30",
                "STATE_DIR": "/state",
            },
            "volumes": [
                {"type": "bind", "source": "/srv/comfyui", "target": "/workspace"},
                {"type": "volume", "source": "runner-state", "target": "/state"},
            ],
            "shm_size": str(2**30),
            "stop_grace_period": "1m0s",
            "deploy": {"resources": {"reservations": {"devices": [{"capabilities": ["gpu"]}]}}},
        },
        "register": {
            "command": ["register", "--attempts", "30"],
            "environment": {"ORCH_URL": "https://orchestrator:8935"},
            "depends_on": {"runner": {"condition": "service_healthy"}},
        },
    }
}


def test_the_ring_geometry_is_the_runners() -> None:
    defaults = Settings()
    assert check.RING_SLOTS == defaults.ring_slots
    assert check.MIN_RING_PIXELS == defaults.ring_max_width * defaults.ring_max_height
    assert check.SLOT_HEADER_BYTES == SLOT_HEADER_SIZE


def test_a_sound_stack_passes() -> None:
    assert check.problems(GOOD, gpu=True) == []


def _broken(path: list[str], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(GOOD)
    node = config
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["services", "register"], None, "services missing: register"),
        (["services", "runner", "environment", "CAPABILITY_CAPACTY"], "2", "does not read"),
        (["services", "runner", "environment", "ORCH_SECRET"], "other", "-orchSecret differs"),
        (["services", "runner", "environment", "ORCH_URL"], "https://elsewhere:8935", "ORCH_URL"),
        (
            ["services", "runner", "environment", "CAPABILITY_URL"],
            "http://localhost:8889",
            "CAPABILITY_URL",
        ),
        (["services", "runner", "shm_size"], str(32 * 2**20), "holds fewer than 2 streams"),
        (["services", "runner", "stop_grace_period"], "40s", "stop_grace_period"),
        (["services", "runner", "environment", "DRAIN_TIMEOUT"], "60", "stop_grace_period"),
        (["services", "runner", "volumes"], None, "STATE_DIR is not on a volume"),
        (["services", "runner", "environment", "STATE_DIR"], "/elsewhere", "not on a volume"),
        (["services", "runner", "deploy"], None, "no GPU reserved"),
        (["services", "register", "depends_on"], None, "healthy runner"),
        (
            ["services", "orchestrator", "command"],
            ["-orchestrator", "-orchSecret=s3"],
            "not offchain",
        ),
    ],
)
def test_each_rule_fires(path: list[str], value: Any, expected: str) -> None:
    found = check.problems(_broken(path, value), gpu=True)
    assert any(expected in line for line in found), found


def test_go_durations() -> None:
    assert check.go_duration_s("1m0s") == 60.0
    assert check.go_duration_s("1m30s") == 90.0
    assert check.go_duration_s("500ms") == 0.5
