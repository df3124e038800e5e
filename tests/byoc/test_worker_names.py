"""Worker slot names: the role alone, or role-index when a role has several workers."""

from __future__ import annotations

from byoc.worker_names import worker_name, worker_role_index


def test_a_single_worker_is_named_by_its_role() -> None:
    assert worker_name("infer", 0, 1) == "infer"
    assert worker_role_index("infer") == ("infer", 0)


def test_several_workers_carry_their_index() -> None:
    names = [worker_name("infer", i, 3) for i in range(3)]
    assert names == ["infer-0", "infer-1", "infer-2"]
    assert [worker_role_index(n) for n in names] == [("infer", 0), ("infer", 1), ("infer", 2)]
