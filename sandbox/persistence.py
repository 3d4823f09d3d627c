"""The sandbox's state on disk (``var/sandbox``): one JSON file and the files' bytes beside it.

``state.json`` holds the fake Telegram's chats and pending updates, the fake Planfix's tasks
and comments, and the page's own record of what people wrote. Bytes go to ``files/<part>/``
once each (file names are ids, files never change). Saving is debounced: a loop compares the
state with what was last written, so a burst of messages costs one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("sandbox")

SAVE_EVERY_S = 0.5


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self._last_written = ""

    def load(self) -> tuple[dict[str, Any], dict[str, dict[str, bytes]]]:
        """The saved state (empty on a first start) and each part's files by name."""
        if not self.path.exists():
            return {}, {}
        text = self.path.read_text()
        self._last_written = text
        state: dict[str, Any] = json.loads(text)
        files: dict[str, dict[str, bytes]] = {}
        root = self.directory / "files"
        if root.is_dir():
            for part in root.iterdir():
                files[part.name] = {item.name: item.read_bytes() for item in part.iterdir() if item.is_file()}
        return state, files

    def save(self, state: dict[str, Any], files: dict[str, dict[str, bytes]]) -> bool:
        """Write what changed; True when state.json was rewritten."""
        for part, named in files.items():
            folder = self.directory / "files" / part
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in named.items():
                target = folder / name
                if not target.exists():
                    _write_atomically(target, data)
        text = json.dumps(state, ensure_ascii=False, indent=1, sort_keys=True)
        if text == self._last_written:
            return False
        _write_atomically(self.path, text.encode())
        self._last_written = text
        return True


def _write_atomically(target: Path, data: bytes) -> None:
    # A crash mid-write must not leave half a state file: write aside, then rename over.
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)


async def keep_saved(
    state_file: StateFile, collect: Callable[[], tuple[dict[str, Any], dict[str, dict[str, bytes]]]]
) -> None:
    """Save whenever the state changed, at most every ``SAVE_EVERY_S``; once more when cancelled."""
    try:
        while True:
            await asyncio.sleep(SAVE_EVERY_S)
            try:
                state_file.save(*collect())
            except OSError as error:
                log.warning("sandbox_state_not_saved", error=str(error))
    finally:
        with contextlib.suppress(OSError):
            state_file.save(*collect())
