"""``ipc.logs``: the text and JSON formats every process uses, and the ids a line is about."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from ipc import logs


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ingest.stream", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(
    ("msg", "args", "ids"),
    [
        ("stream %s: ending (%s)", ("s1", "stop"), {"stream_id": "s1"}),
        ("session %s (%s): %s%s", ("abc", "text-reversal", "completed", ""), {"session_id": "abc"}),
        ("worker %s started, pid %s", ("ingest", 7), {}),
        ("%d%% done for stream %s", (50, "s2"), {"stream_id": "s2"}),
        ("stream %s: rejected: %s", ("s3",), {"stream_id": "s3"}),
        ("handled %d frames of stream %d", (3, 4), {}),  # not a string placeholder: no id
        ("no args stream %s", (), {}),
    ],
)
def test_ids_from_the_format_string(msg: str, args: tuple[object, ...], ids: dict) -> None:
    assert logs.ids_of(record(msg, *args)) == ids


def test_ids_passed_as_extra_win() -> None:
    rec = record("stream %s: x", "from-args", stream_id="from-extra", session_id="sess")
    assert logs.ids_of(rec) == {"stream_id": "from-extra", "session_id": "sess"}


def test_json_line_has_the_fields_and_the_traceback() -> None:
    formatter = logs.formatter("json", "egress")
    line = formatter.format(record("stream %s: published %d segments", "s9", 3))
    entry = json.loads(line)
    assert entry == {
        "ts": entry["ts"],
        "level": "INFO",
        "process": "egress",
        "logger": "ingest.stream",
        "msg": "stream s9: published 3 segments",
        "stream_id": "s9",
    }
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = record("stream %s: failed", "s9")
        rec.exc_info = sys.exc_info()
    entry = json.loads(formatter.format(rec))
    assert "ValueError: boom" in entry["exc"]
    assert "\n" not in formatter.format(rec)  # one line, even with a traceback


def test_text_format_names_the_process() -> None:
    line = logs.formatter("text", "infer").format(record("stream %s: ready", "s1"))
    assert "[infer " in line and line.endswith("ingest.stream: stream s1: ready")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        logs.formatter("xml", "parent")


def test_configure_twice_keeps_one_handler_and_leaves_others() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        logs.configure("INFO", "text", "parent", stream=first)
        logs.configure("INFO", "json", "parent", stream=second)
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1
        logging.getLogger("byoc.test").info("stream %s: hello", "s1")
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["stream_id"] == "s1"
        assert all(h in root.handlers for h in before)
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)
