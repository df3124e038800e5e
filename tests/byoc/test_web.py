"""The example workflows shipped with the page run on the built-in engine and do what their
names say; the page's files are package data."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from byoc import web
from infer.engine.builtin import BuiltinEngine
from tests.infer.conftest import image_batch, images_of

EXPECTED = {
    "passthrough": lambda x: x,
    "invert": lambda x: 1.0 - x,
    "mirror": lambda x: torch.flip(x, dims=[2]),
}


def test_examples_are_listed_in_page_order_with_a_description_each() -> None:
    names = [entry["name"] for entry in web.example_workflows()]
    assert names[:3] == ["passthrough", "invert", "blur"]
    assert len(names) == len(set(names)) >= 5
    for entry in web.example_workflows():
        assert set(entry) == {"name", "description", "workflow"}
        assert entry["description"].strip()


@pytest.mark.parametrize("entry", web.example_workflows(), ids=lambda e: e["name"])
def test_every_example_runs_on_the_builtin_engine(entry: dict[str, object]) -> None:
    engine = BuiltinEngine("cpu")
    x = image_batch(1, 24, 16)
    out = images_of(engine.run(engine.prepare(entry["workflow"]), x))
    assert out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    name = entry["name"]
    if name in EXPECTED:
        assert torch.allclose(out, EXPECTED[name](x))  # type: ignore[index]
    else:
        assert not torch.allclose(out, x, atol=1e-3)  # it changes the picture


def test_every_page_file_is_package_data() -> None:
    for name in web.ASSETS:
        assert web.asset(name)
    with pytest.raises(KeyError):
        web.asset("__init__.py")


@pytest.mark.comfyui
def test_every_example_runs_in_real_comfyui_like_the_builtin_engine(comfy_engine: Any) -> None:
    builtin = BuiltinEngine("cpu")
    x = image_batch(1, 24, 16)
    for entry in web.example_workflows():
        theirs = images_of(comfy_engine.run(comfy_engine.prepare(entry["workflow"]), x))
        ours = images_of(builtin.run(builtin.prepare(entry["workflow"]), x))
        assert torch.allclose(theirs.cpu(), ours, atol=2e-3), entry["name"]
