"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The new content is written under a temporary name beside the target (same folder, so the same
file system), flushed and fsynced, and renamed onto the target with ``os.replace``; the folder is
then fsynced so that the rename survives a crash. When the writer raises, the temporary file is
removed and the target is left as it was. Only a hard kill can leave a temporary file behind; its
name, ``.<target name>.<random hex>.tmp`` (:func:`is_temporary`), is hidden and never matches a
pattern that ends with the target's suffix, and the owner of a folder may remove such files.

- :func:`write_bytes`, :func:`write_text`: a whole file at once;
- :func:`replacing`: a context manager yielding the temporary path, for writers that open the file
  themselves (DuckDB ``COPY ... TO``, a gzip stream, ``numpy.save``);
- :func:`replace`: put a complete file written under another name in place, durably.

This module imports nothing of ours (nor DuckDB): the crawl process (``crawlers/``) uses it too.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["is_temporary", "replace", "replacing", "temporary_path", "write_bytes", "write_text"]

_TMP_SUFFIX = ".tmp"


def temporary_path(target: str | Path) -> Path:
    """A fresh temporary name beside ``target``."""
    target = Path(target)
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`temporary_path`'s."""
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace(src: str | Path, dest: str | Path) -> None:
    """Rename the complete file ``src`` onto ``dest`` (same folder or file system), durably:
    ``src`` is fsynced first, the folder after."""
    src, dest = Path(src), Path(dest)
    _fsync_file(src)
    os.replace(src, dest)
    _fsync_dir(dest.parent)


@contextlib.contextmanager
def replacing(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; when the block ends, the file written there
    replaces ``dest`` (:func:`replace`). When the block raises, the temporary file is removed and
    ``dest`` stays as it was. The folder is created if missing; the block must close the file it
    writes."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(dest)
    try:
        yield tmp
        replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(dest: str | Path, data: bytes) -> None:
    """Replace ``dest`` with ``data`` atomically."""
    with replacing(dest) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(dest: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``dest`` with ``text`` atomically (encoded as ``encoding``, newlines as given)."""
    write_bytes(dest, text.encode(encoding))
