"""GPUs seen without torch, and how many infer workers ``auto`` starts."""

from __future__ import annotations

from pathlib import Path

from byoc.devices import infer_worker_count, infer_worker_gpus, usable_cores, visible_gpus


def test_cuda_visible_devices_wins_and_stops_at_the_first_invalid_entry(tmp_path: Path) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, tmp_path) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}, tmp_path) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, tmp_path) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}, tmp_path) == ["1"]


def test_without_the_variable_the_driver_entries_are_counted(tmp_path: Path) -> None:
    assert visible_gpus({}, tmp_path / "absent") == []
    for bus in ("0000:01:00.0", "0000:02:00.0"):
        (tmp_path / bus).mkdir()
    assert visible_gpus({}, tmp_path) == ["0", "1"]


def test_auto_is_one_per_gpu_else_half_the_cores() -> None:
    assert infer_worker_count(0, ["0", "1"], cores=16) == 2
    assert infer_worker_count(0, [], cores=16) == 8
    assert infer_worker_count(0, [], cores=3) == 1
    assert infer_worker_count(0, [], cores=1) == 1
    assert infer_worker_count(3, ["0"], cores=2) == 3  # an explicit count wins
    assert usable_cores() >= 1


def test_each_worker_gets_a_gpu_round_robin() -> None:
    assert infer_worker_gpus(3, ["4", "5"]) == ["4", "5", "4"]
    assert infer_worker_gpus(2, []) == ["", ""]
