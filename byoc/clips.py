"""Files of runner-API video sessions: the uploaded clip and the processed MP4.

They live in one folder, named by session id, and are deleted with their session (``DELETE``,
retention sweep). Without a state directory the folder is a private temporary one, deleted with
the runner; with one it is ``STATE_DIR/clips``, so a restarted runner still serves the outputs of
the sessions it remembers.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class ClipStore:
    """Where a session's input clip and output MP4 are kept."""

    def __init__(self, root: Path | None = None) -> None:
        self._temporary = root is None
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="comfystream-byoc-clips-"))
        else:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.root = root

    def input_path(self, session_id: str) -> Path:
        return self.root / f"{session_id}.input"

    def output_path(self, session_id: str) -> Path:
        return self.root / f"{session_id}.mp4"

    def remove(self, session_id: str) -> None:
        """Delete a session's files (no error if there are none)."""
        for path in (self.input_path(session_id), self.output_path(session_id)):
            path.unlink(missing_ok=True)

    def prune(self, live_ids: Iterable[str]) -> list[str]:
        """Delete the files of sessions not in ``live_ids`` (the table forgot them)."""
        keep = set(live_ids)
        removed = []
        for path in self.root.iterdir():
            if path.name.split(".", 1)[0] not in keep:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def close(self) -> None:
        """Delete the folder when it is the runner's own temporary one."""
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)
