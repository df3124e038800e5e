"""``ipc.echo``: answers repeat a bounded amount of the client's input."""

from __future__ import annotations

from ipc.echo import clip_text, list_some, summarize_large_values


def test_clip_text_says_how_much_was_cut() -> None:
    assert clip_text("short") == "short"
    clipped = clip_text("x" * 5000, limit=100)
    assert clipped.startswith("x" * 100) and clipped.endswith("(4900 more characters)")


def test_list_some_counts_the_rest() -> None:
    assert list_some(["a", "b"]) == "a, b"
    assert list_some([str(i) for i in range(25)], limit=3) == "0, 1, 2, and 22 more"


def test_large_values_are_described_small_ones_kept() -> None:
    params = {"width": 512, "prompts": [{"n": "x" * 10_000}], "w": {str(i): i for i in range(2000)}}
    echoed = summarize_large_values(params)
    assert echoed["width"] == 512
    assert echoed["prompts"] == {"omitted": True, "json_bytes": 10_010, "items": 1}
    assert echoed["w"]["omitted"] is True and echoed["w"]["keys"] == 2000
