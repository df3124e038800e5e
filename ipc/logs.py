"""Log output of every process (the parent and each worker), configured from one setting.

``text`` is the classic human line; ``json`` is one object a line with the same fields in every
process, for Loki or ELK::

    {"ts": "2026-01-01T12:00:00.123Z", "level": "INFO", "process": "ingest",
     "logger": "ingest.stream", "msg": "stream abc: input channel ended", "stream_id": "abc"}

``process`` is ``parent`` or the worker's name. ``stream_id`` / ``session_id`` are added when the
line is about one: taken from ``extra={"stream_id": ...}`` when a caller passes it, otherwise
from the argument that follows ``stream %s`` / ``session %s`` in the format string (the way every
per-stream log line of this code base starts). An exception's traceback goes in ``exc``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
_TEXT_FORMAT = "%(asctime)s %(levelname)s [{process} %(process)d] %(name)s: %(message)s"
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")
_ID_BEFORE = re.compile(r"\b(stream|session)\s*$")
_ID_FIELDS = {"stream": "stream_id", "session": "session_id"}
_HANDLER_NAME = "comfystream-byoc"


def ids_of(record: logging.LogRecord) -> dict[str, str]:
    """``stream_id`` / ``session_id`` a record is about (see the module docstring)."""
    found: dict[str, str] = {}
    for field in ("stream_id", "session_id"):
        value = record.__dict__.get(field)
        if value:
            found[field] = str(value)
    args = record.args
    if not isinstance(record.msg, str) or not isinstance(args, tuple) or not args:
        return found
    position = 0
    for match in _PLACEHOLDER.finditer(record.msg):
        if match.group() == "%%":
            continue
        if position >= len(args):
            break
        before = _ID_BEFORE.search(record.msg, 0, match.start())
        if before is not None and match.group().endswith("s"):
            found.setdefault(_ID_FIELDS[before.group(1)], str(args[position]))
        position += 1
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``process``, ``logger``, ``msg`` and ids."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(ids_of(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str, process: str) -> logging.Formatter:
    """The formatter for ``log_format`` (``text`` or ``json``) in the process ``process``."""
    if log_format == "json":
        return JsonFormatter(process)
    if log_format == "text":
        return logging.Formatter(_TEXT_FORMAT.format(process=process))
    raise ValueError(f"unknown log format {log_format!r} (known: {', '.join(LOG_FORMATS)})")


def configure(level: str, log_format: str, process: str, stream: TextIO | None = None) -> None:
    """Send every log record of this process to ``stream`` (stderr) in ``log_format``.

    Calling it again replaces the handler it installed before (other handlers, such as a test
    runner's capture, are left alone). Python warnings are logged too (logger ``py.warnings``).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(log_format, process))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings become records in the same format
