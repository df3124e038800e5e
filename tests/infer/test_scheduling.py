"""The round-robin order of a scheduler round and its grouping (``infer.scheduling``)."""

from __future__ import annotations

from infer.scheduling import RoundRobin, groups_in_order


def test_each_round_starts_one_stream_further() -> None:
    order = RoundRobin()
    rounds = [order.order(["a", "b", "c"]) for _ in range(4)]
    assert rounds == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert order.order([]) == []
    firsts = [order.order(["a", "b"])[0] for _ in range(6)]
    assert firsts.count("a") == firsts.count("b") == 3  # no stream always leads


def test_groups_keep_the_order_of_their_first_member() -> None:
    items = [("s1", "invert"), ("s2", "blur"), ("s3", "invert"), ("s4", "alone")]
    groups = groups_in_order(items, key=lambda item: item[1])
    assert groups == [[("s1", "invert"), ("s3", "invert")], [("s2", "blur")], [("s4", "alone")]]
