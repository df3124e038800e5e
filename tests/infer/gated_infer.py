"""A test-only infer worker whose engine has one more node, ``TestGate``: every engine call
through it reports the frames it carries and then blocks until the test lets it through.

The gate is a pair of Unix datagram sockets in the abstract namespace, derived from the key in
``GATED_INFER_KEY`` (spawned workers inherit the environment): the node sends a JSON report
``{"lane": n, "frames": [[r, g], ...]}`` (the red and green value of each frame's first pixel:
the test writes a stream marker and a sequence number there) to ``<key>.test`` and waits for a
datagram on ``<key>.node``. The node is never shipped: only this module registers it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

import torch

from infer.engine.builtin import BuiltinEngine
from infer.nodes import BUILTIN_NODES
from infer.worker import InferService
from ipc.child import WorkerSpec, run_worker

GATE_ENV = "GATED_INFER_KEY"
GATE_TIMEOUT_S = 120.0  # hang guard: a test that stopped releasing must not leave it blocked


def address(key: str, end: str) -> bytes:
    return b"\0" + f"{key}.{end}".encode()


class _Gate:
    """The worker's end of the gate (one socket, opened on first use)."""

    _lock = threading.Lock()
    _sock: socket.socket | None = None

    @classmethod
    def pass_through(cls, report: dict[str, Any]) -> None:
        key = os.environ[GATE_ENV]
        with cls._lock:
            if cls._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(address(key, "node"))
                sock.settimeout(GATE_TIMEOUT_S)
                cls._sock = sock
            cls._sock.sendto(json.dumps(report).encode(), address(key, "test"))
            cls._sock.recv(16)


class TestGate:
    """Reports its batch, waits for the test, returns the images unchanged."""

    CATEGORY = "test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "hold"
    BATCH_INDEPENDENT = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",), "lane": ("INT", {"default": 0})}}

    def hold(self, image: torch.Tensor, lane: int) -> tuple[torch.Tensor]:
        corner = (image[:, 0, 0, :2].float() * 255).round().to(torch.int64).tolist()
        _Gate.pass_through({"lane": lane, "frames": corner})
        return (image,)


class GatedInfer(InferService):
    def _select_engine(self) -> Any:
        return BuiltinEngine(nodes={**BUILTIN_NODES, "TestGate": TestGate})


def main(spec: WorkerSpec) -> None:
    run_worker(spec, GatedInfer)
