"""Reading a JSONL file of objects with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path


def json_objects(path: Path, error: Callable[[str], Exception], *, prefix: str = "",
                 what: str = "a JSON object") -> Iterator[tuple[int, str, dict]]:
    """``(line number, "<path>:<line>", object)`` for every non-blank line, streamed.

    Raises ``error(message)`` (message starting with ``prefix``) for a missing or non-UTF-8 file,
    a line that is not JSON, or a line that is not an object (``what`` names what it should be).
    """
    if not Path(path).is_file():
        raise error(f"{prefix}{path}: file not found")
    with open(path, "rb") as fh:  # decoded line by line, so an encoding error names its line
        for no, raw in enumerate(fh, 1):
            where = f"{path}:{no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(f"{prefix}{where}: not UTF-8 ({e})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{prefix}{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise error(f"{prefix}{where}: {what} must be a JSON object, not {type(obj).__name__}")
            yield no, where, obj
