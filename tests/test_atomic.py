"""dataset_platform.atomic: the target is the old file or the new one, never half of one."""

import gzip
from pathlib import Path

import pytest

from dataset_platform import atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_text_and_bytes_replace_the_file_and_leave_no_temporary_file(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    atomic.write_text(p, "{}\n")
    assert p.read_text(encoding="utf-8") == "{}\n"
    atomic.write_text(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode()
    atomic.write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert _names(tmp_path) == ["a.json"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_writer_that_raises_leaves_the_old_file_intact(tmp_path: Path, error: BaseException) -> None:
    p = tmp_path / "batch.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"url": "old"}\n'))
    old = p.read_bytes()
    with pytest.raises(type(error)), atomic.replacing(p) as tmp:
        assert tmp.parent == p.parent and atomic.is_temporary(tmp.name)
        with gzip.open(tmp, "wb") as f:
            f.write(b'{"url": "new"}\n' * 1000)
        raise error
    assert p.read_bytes() == old
    assert _names(tmp_path) == ["batch.jsonl.gz"]  # the temporary file is gone


def test_a_failed_rename_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a non-empty folder: os.replace of a file onto it fails
    with pytest.raises(OSError):
        atomic.write_text(target, "x")
    assert _names(tmp_path) == ["taken"] and _names(target) == ["inside"]


def test_replacing_yields_a_path_the_caller_writes(tmp_path: Path) -> None:
    p = tmp_path / "out.bin"
    with atomic.replacing(p) as tmp:
        assert not p.exists()
        tmp.write_bytes(b"done")
    assert p.read_bytes() == b"done" and _names(tmp_path) == ["out.bin"]


def test_replace_moves_a_complete_file_into_place(tmp_path: Path) -> None:
    part, out = tmp_path / "x.jsonl.gz.part", tmp_path / "x.jsonl.gz"
    part.write_bytes(b"records")
    out.write_bytes(b"older")
    atomic.replace(part, out)
    assert out.read_bytes() == b"records" and not part.exists()


def test_temporary_names_are_hidden_and_unique(tmp_path: Path) -> None:
    a, b = atomic.temporary_path(tmp_path / "index.json"), atomic.temporary_path(tmp_path / "index.json")
    assert a != b and a.parent == tmp_path and a.name.startswith(".index.json.")
    assert atomic.is_temporary(a.name) and not atomic.is_temporary("index.json")
    assert not a.match("*.json")
