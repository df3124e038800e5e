"""The command line as a user runs it: a real subprocess of the console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from byoc.settings import OPTIONS

SCRIPT = Path(sys.executable).parent / "comfystream-byoc"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_console_script_and_module_give_the_same_help() -> None:
    script = run_cli("--help")
    module = subprocess.run(
        [sys.executable, "-m", "byoc", "--help"], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == module.returncode == 0
    assert "serve" in script.stdout
    assert script.stdout.replace("comfystream-byoc", "X") == module.stdout.replace(
        "comfystream-byoc", "X"
    )


def test_serve_help_documents_every_flag_and_env_variable() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in OPTIONS:
        assert option.flag in text, option.flag
        for env in option.env:
            assert env in text, env


def test_top_level_help_lists_the_environment_variables() -> None:
    text = " ".join(run_cli("--help").stdout.split())
    for option in OPTIONS:
        assert option.env[0] in text, option.env[0]


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["serve", "--port", "70000"], {}, "--port must be 1-65535"),
        (["serve", "--capacity", "0"], {}, "--capacity must be at least 1"),
        (["serve", "--workspace", "/no/such/dir"], {}, "does not exist"),
        (["serve"], {"CAPABILITY_CAPACITY": "zero"}, "CAPABILITY_CAPACITY: invalid value"),
    ],
)
def test_bad_values_stop_startup_with_one_line_and_exit_2(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    import os

    result = run_cli(*args, env={**os.environ, **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
