"""The built-in executor: dependency order, cached frame-independent subgraphs, errors."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from infer.engine.builtin import BuiltinEngine
from infer.errors import NodeExecutionError, WorkflowError
from infer.nodes import BUILTIN_NODES
from infer.nodes.image import EmptyImage
from tests.infer.conftest import INVERT, chain, image_batch, images_of

COMPOSITE = {
    "1": {"class_type": "LoadTensor", "inputs": {}},
    "2": {
        "class_type": "CountingEmptyImage",
        "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0xFF0000},
    },
    "3": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 4, "height": 4}},
    "4": {
        "class_type": "ImageCompositeMasked",
        "inputs": {
            "destination": ["1", 0],
            "source": ["2", 0],
            "x": 2,
            "y": 1,
            "resize_source": False,
            "mask": ["3", 0],
        },
    },
    "5": {"class_type": "SaveTensor", "inputs": {"images": ["4", 0]}},
}


class CountingEmptyImage(EmptyImage):
    """EmptyImage that counts its executions (to observe the constant cache)."""

    calls: ClassVar[int] = 0

    def generate(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor]:
        CountingEmptyImage.calls += 1
        return super().generate(*args, **kwargs)


class ReturnsNone:
    CATEGORY = "test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def run(self, image: torch.Tensor) -> None:
        return None


class ListInput(ReturnsNone):
    INPUT_IS_LIST = True


def _engine(**extra: type) -> BuiltinEngine:
    return BuiltinEngine("cpu", nodes={**BUILTIN_NODES, **extra})


def test_invert_runs_and_reports_progress_per_node(engine: BuiltinEngine) -> None:
    prepared = engine.prepare(INVERT)
    x = image_batch(1, 8, 6)
    seen: list[tuple[str, str, int, int]] = []
    result = engine.run(prepared, x, progress=lambda *a: seen.append(a))
    assert torch.equal(images_of(result), 1.0 - x)
    assert seen == [
        ("1", "ByocLoadFrame", 1, 3),
        ("2", "ImageInvert", 2, 3),
        ("99", "ByocSaveFrame", 3, 3),
    ]
    assert result.executed == 3


def test_frame_independent_nodes_run_once_per_prepared_workflow() -> None:
    engine = _engine(CountingEmptyImage=CountingEmptyImage)
    CountingEmptyImage.calls = 0
    prepared = engine.prepare(COMPOSITE)
    results = [engine.run(prepared, image_batch(1, 8, 6, seed=s)) for s in range(3)]
    assert CountingEmptyImage.calls == 1
    assert results[0].executed == 5 and results[2].executed == 3  # constants not re-executed
    for seed, result in enumerate(results):
        x = image_batch(1, 8, 6, seed=seed)
        assert torch.all(images_of(result)[0, 1:5, 2:6] == torch.tensor([1.0, 0.0, 0.0]))
        assert torch.equal(images_of(result)[0, 0], x[0, 0])  # outside the pasted square: the frame
    engine.run(engine.prepare(COMPOSITE), image_batch(1, 8, 6))
    assert CountingEmptyImage.calls == 2  # a new prepared workflow computes its own


def test_a_batch_gives_the_same_pixels_as_one_by_one(engine: BuiltinEngine) -> None:
    workflow = chain(("ImageBlur", {"blur_radius": 2, "sigma": 0.8}), ("ImageInvert", {}))
    prepared = engine.prepare(workflow)
    batch = image_batch(4, 16, 12)
    together = images_of(engine.run(prepared, batch))
    alone = torch.cat([images_of(engine.run(prepared, batch[i : i + 1])) for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_text_outputs_come_back_in_order(engine: BuiltinEngine) -> None:
    workflow = {
        "1": {"class_type": "LoadTensor", "inputs": {}},
        "2": {"class_type": "FrameStatistics", "inputs": {"image": ["1", 0], "precision": 2}},
        "3": {"class_type": "SaveTextTensor", "inputs": {"data": ["2", 0]}},
        "4": {
            "class_type": "SaveTextTensor",
            "inputs": {"data": "hello\nworld", "remove_linebreaks": True},
        },
    }
    prepared = engine.prepare(workflow)
    assert not prepared.batchable and not prepared.has_frame_output
    result = engine.run(prepared, torch.zeros(1, 2, 2, 3))
    assert result.images is None
    assert result.texts == [
        '{"frames":1,"width":2,"height":2,"mean":[0.0,0.0,0.0],"min":[0.0,0.0,0.0],"max":[0.0,0.0,0.0]}',
        "helloworld",
    ]


def test_a_raising_node_becomes_a_node_execution_error(engine: BuiltinEngine) -> None:
    prepared = engine.prepare(
        chain(("ImageToMask", {"channel": "alpha"}), ("MaskToImage", {"mask": ["2", 0]}))
    )
    with pytest.raises(NodeExecutionError) as info:
        engine.run(prepared, image_batch(1, 4, 4))
    assert info.value.node_id == "2" and info.value.class_type == "ImageToMask"
    assert "IndexError" in str(info.value)


def test_a_node_returning_none_is_an_error() -> None:
    engine = _engine(ReturnsNone=ReturnsNone)
    prepared = engine.prepare(chain(("ReturnsNone", {})))
    with pytest.raises(NodeExecutionError, match="returned nothing"):
        engine.run(prepared, image_batch(1, 4, 4))


def test_list_nodes_are_rejected_when_preparing() -> None:
    engine = _engine(ListInput=ListInput)
    with pytest.raises(WorkflowError) as info:
        engine.prepare(chain(("ListInput", {})))
    assert info.value.kinds == {"unsupported_node"}


def test_a_workflow_belongs_to_its_engine(engine: BuiltinEngine) -> None:
    prepared = BuiltinEngine("cpu").prepare(INVERT)
    with pytest.raises(ValueError, match="another engine"):
        engine.run(prepared, image_batch(1, 4, 4))


def test_batchable_only_for_batch_independent_nodes_without_text(engine: BuiltinEngine) -> None:
    assert engine.prepare(INVERT).batchable
    stats = chain(("FrameStatistics", {}), save=False)
    stats["9"] = {"class_type": "SaveTextTensor", "inputs": {"data": ["2", 0]}}
    assert not engine.prepare(stats).batchable


@pytest.mark.gpu
def test_cuda_engine_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = BuiltinEngine("cuda")
    cpu = BuiltinEngine("cpu")
    workflow = COMPOSITE | {"2": {"class_type": "EmptyImage", "inputs": COMPOSITE["2"]["inputs"]}}
    workflow["6"] = {
        "class_type": "ImageBlur",
        "inputs": {"image": ["4", 0], "blur_radius": 3, "sigma": 1.0},
    }
    workflow["5"] = {"class_type": "SaveTensor", "inputs": {"images": ["6", 0]}}
    x = image_batch(2, 32, 24)
    on_gpu = images_of(gpu.run(gpu.prepare(workflow), x.cuda()))
    assert on_gpu.device.type == "cuda"
    on_cpu = images_of(cpu.run(cpu.prepare(workflow), x))
    assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-5)
