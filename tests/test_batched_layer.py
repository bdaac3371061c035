"""A layer stored by batch (storage/batched.py): parts are staged, committed at once, recovered
after a crash between the commit and the moves, and adopted by a later run of the same work."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_platform.storage import batched
from dataset_platform.storage.batched import BatchedLayer, PartInfo, ids_fingerprint


def _stage(layer: BatchedLayer, key: str, ids: list[str], chain: str = "c1", input_ids: str = "in") -> PartInfo:
    d = layer.stage(key)
    pq.write_table(pa.table({"id": ids}), d / "data.parquet")
    return layer.staged(PartInfo(key, chain=chain, input_ids=input_ids, rows=len(ids), ids=f"{len(ids)}"))


def _ids(layer: BatchedLayer) -> dict[str, list[str]]:
    return {k: pq.read_table(layer.file(k)).column("id").to_pylist() for k in layer.parts}


def test_parts_appear_only_at_the_commit(tmp_path):
    folder = tmp_path / "layer"
    with BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1", "2"])
        _stage(layer, "s/b", ["3"])
        assert not (folder / "s").exists() and not (folder / "manifest.json").exists()
        layer.commit()
    meta = json.loads((folder / "manifest.json").read_text())
    assert meta["generation"] == 1 and meta["rows"] == 3 and sorted(meta["parts"]) == ["s/a", "s/b"]
    fresh = BatchedLayer(folder, "t").load()
    assert _ids(fresh) == {"s/a": ["1", "2"], "s/b": ["3"]}
    assert not any((folder / ".staging").rglob("data.parquet"))
    # a second commit replaces one part and drops the other; untouched generations stay
    with BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1"])
        layer.drop("s/b")
        layer.commit()
    fresh = BatchedLayer(folder, "t").load()
    assert _ids(fresh) == {"s/a": ["1"]} and fresh.parts["s/a"].gen == 2 and not (folder / "s" / "b").exists()


def test_a_run_that_fails_before_the_commit_leaves_the_layer_and_its_work_for_the_next(tmp_path):
    folder = tmp_path / "layer"
    with BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1"])
        layer.commit()
    with pytest.raises(RuntimeError), BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1", "2"], chain="c2", input_ids="in2")
        _stage(layer, "s/new", ["9"], chain="c2", input_ids="in9")
        raise RuntimeError("killed")
    again = BatchedLayer(folder, "t").load()
    assert _ids(again) == {"s/a": ["1"]}  # as it was
    # the next run of the same work adopts what was staged; different work does not
    assert again.adopt("s/a", "c2", "in2") is not None
    assert again.adopt("s/new", "c2", "other input") is None
    assert again.adopt("s/new", "c3", "in9") is None
    assert again.adopt("s/new", "c2", "in9") is not None
    again.commit()
    assert _ids(BatchedLayer(folder, "t").load()) == {"s/a": ["1", "2"], "s/new": ["9"]}


def test_a_crash_between_the_commit_and_the_moves_is_completed_by_the_next_load(tmp_path, monkeypatch):
    folder = tmp_path / "layer"
    with BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1"])
        layer.commit()

    def boom(self, key):
        raise OSError("killed after the commit")

    monkeypatch.setattr(BatchedLayer, "_move_in", boom)
    with pytest.raises(OSError), BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1", "2"])
        _stage(layer, "s/b", ["3"])
        layer.commit()
    monkeypatch.undo()
    # the manifest names generation 2; the parts are still staged: loading moves them in
    layer = BatchedLayer(folder, "t").load()
    assert _ids(layer) == {"s/a": ["1", "2"], "s/b": ["3"]}
    assert {p.gen for p in layer.parts.values()} == {2}


def test_a_committed_part_that_is_missing_says_how_to_rebuild(tmp_path):
    folder = tmp_path / "layer"
    with BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1"])
        layer.commit()
    (folder / "s" / "a" / "part.json").unlink()
    with pytest.raises(FileNotFoundError, match="delete .*manifest.json"):
        BatchedLayer(folder, "t").load()


def test_files_of_the_single_file_layout_and_unnamed_parts_are_removed(tmp_path):
    folder = tmp_path / "layer"
    folder.mkdir()
    pq.write_table(pa.table({"id": ["old"]}), folder / "data.parquet")  # an earlier version's single file
    (folder / "stats.json").write_text("{}")
    (folder / "s" / "stray").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["x"]}), folder / "s" / "stray" / "data.parquet")
    with BatchedLayer(folder, "t").locked() as layer:
        _stage(layer, "s/a", ["1"])
        layer.commit()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["manifest.json", "s"]
    assert sorted(p.name for p in (folder / "s").iterdir()) == ["a"]


def test_the_ids_fingerprint_is_a_set_fingerprint():
    con = duckdb.connect()
    a = ids_fingerprint(con, "SELECT unnest(['x', 'y', 'z']) AS id")
    b = ids_fingerprint(con, "SELECT unnest(['z', 'x', 'y']) AS id")
    c = ids_fingerprint(con, "SELECT unnest(['x', 'y']) AS id")
    assert a == b != c and c.startswith("2:")
    assert ids_fingerprint(con, "SELECT 'x' AS id WHERE false") == batched.NO_IDS
