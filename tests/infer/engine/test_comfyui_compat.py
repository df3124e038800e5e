"""The version shim's defence against ComfyUI's argv parsing (a fresh process each time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.comfyui

_SCRIPT = """
import os, sys
sys.argv = [sys.argv[0], "--port", "not-a-number", "--cuda-device", "7", "--cpu"]
from infer.engine import comfyui_compat
comfyui_compat.import_client_module()
from comfy.cli_args import args
print(os.environ.get("CUDA_VISIBLE_DEVICES"), args.port, args.cpu, sys.argv[1])
"""


def test_importing_comfyui_ignores_the_process_argv() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Without the shim ComfyUI's parser would exit on "--port not-a-number" or pick up
    # "--cuda-device 7"; with it, defaults apply and the process argv is restored.
    assert done.stdout.split() == ["None", "8188", "False", "--port"]


def test_the_installed_comfyui_is_the_tested_version() -> None:
    import comfy

    from infer.engine import comfyui_compat

    assert comfy.__version__ in comfyui_compat.TESTED_VERSIONS
    assert comfyui_compat.is_tested_version(comfyui_compat.comfy_version())
