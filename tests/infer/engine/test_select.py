"""Engine selection. These tests make ComfyUI unimportable for the test's duration (a real
import failure through ``sys.modules``), so they mean the same in every environment."""

from __future__ import annotations

import logging
import sys

import pytest

from infer.engine import BuiltinEngine, comfyui_importable, select_engine
from infer.errors import EngineUnavailableError


@pytest.fixture
def no_comfyui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "comfy", None)
    monkeypatch.setitem(sys.modules, "comfy.client", None)
    monkeypatch.setitem(sys.modules, "comfy.client.embedded_comfy_client", None)


def test_comfyui_not_importable_is_reported_with_the_reason(no_comfyui: None) -> None:
    available, reason = comfyui_importable()
    assert not available and "comfy" in reason


def test_auto_falls_back_to_builtin_and_logs_it(
    no_comfyui: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="infer.engine.select"):
        engine = select_engine("auto", device="cpu")
    assert isinstance(engine, BuiltinEngine)
    assert "inference engine: builtin (auto: ComfyUI not importable" in caplog.text


def test_requesting_comfyui_without_it_is_a_startup_error(no_comfyui: None) -> None:
    with pytest.raises(
        EngineUnavailableError, match="engine 'comfyui' requested but ComfyUI cannot be imported"
    ):
        select_engine("comfyui", "/nonexistent-workspace")


def test_engine_name_comes_from_the_environment(
    no_comfyui: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMFY_ENGINE", "builtin")
    assert isinstance(select_engine(device="cpu"), BuiltinEngine)
    monkeypatch.setenv("COMFY_ENGINE", "comfyui")
    with pytest.raises(EngineUnavailableError):
        select_engine()
    monkeypatch.setenv("COMFY_ENGINE", "tensorrt")
    with pytest.raises(EngineUnavailableError, match="unknown engine 'tensorrt'"):
        select_engine()
