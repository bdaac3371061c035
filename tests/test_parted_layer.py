"""The deduplicated layer stored in parts (storage/parted.py): a refresh writes a part with
only its new rows, rewrites only the parts that lost a row, always holds what a full run over the
same input holds, and survives a run that fails at any step of its write."""

from __future__ import annotations

import random
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_platform.storage import parted as parted_layer
from dataset_platform.stages.dedup.stage import dedup_into_parts
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.storage.parted import PartedLayer
from dataset_platform.storage import memory_connection, sql_str

LAYER = "deduplicated_documents"
WORDS = ("lantern harbour orchard meadow ferry weaver council bakery tower valley morning winter shadow "
         "painted carried quietly beyond narrow bright cold river bridge market garden library station").split()


def doc(rng: random.Random) -> str:
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(50)).capitalize() + "." for _ in range(4))


def write_input(path, rows: list[dict]) -> str:
    """The cleaned layer as dedup reads it: id-ordered, with the text_hash the clean stage writes."""
    con = memory_connection()
    con.register("r", pa.Table.from_pylist(rows))
    pii = ", ".join(f"0 AS pii_{t}" for t in ("email", "phone", "ip", "card", "iban", "cn_id"))
    con.sql(f"COPY (SELECT id, 'src' AS source, 'https://example.test/' || id AS url, title, text, 'en' AS lang, "
            f"length(text)::BIGINT AS n_chars, 200::BIGINT AS n_words, {pii}, '{{}}' AS quality, "
            f"[]::VARCHAR[] AS annotations, hash(text) AS text_hash FROM r ORDER BY id) TO {sql_str(path)} (FORMAT parquet)")
    con.close()
    return f"read_parquet({sql_str(path)})"


def run(tmp_path, rows: list[dict], name: str, *, fail_at: str | None = None, monkeypatch=None) -> list[str]:
    """One dedup run as the pipeline does it (index + parted layer); returns its log."""
    logs: list[str] = []
    src = write_input(tmp_path / f"{name}.parquet", rows)
    con = memory_connection()
    _, commit = dedup_into_parts(con, src, None, PartedLayer(tmp_path / "layer", LAYER),
                                 MinHashIndex(tmp_path / "layer" / "minhash_index"), clusters_path=tmp_path / "c.parquet",
                                 rejects_path=tmp_path / "r.parquet", workers=1, log=logs.append)
    if fail_at == "after_commit":
        monkeypatch.setattr(parted_layer.PartedLayer, "_move_in", _boom)
    if fail_at != "before_commit":
        commit()
    con.close()
    return logs


def _boom(self, part):
    raise OSError("simulated crash after the commit point")


def layer_rows(tmp_path) -> dict[str, tuple]:
    files = sorted((tmp_path / "layer").glob("*/data.parquet"))
    t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
    ids = t.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a row is stored twice"
    return {r["id"]: (r["title"], r["text"], r["content_hash"]) for r in t.to_pylist()}


def full_run(tmp_path, rows: list[dict]) -> dict[str, tuple]:
    """What a run without history keeps (in a fresh folder)."""
    fresh = tmp_path / "fresh"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    run(fresh, rows, "full")
    return layer_rows(fresh)


def parts(tmp_path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((tmp_path / "layer").glob("*/data.parquet"))}


@pytest.fixture()
def corpus():
    rng = random.Random(3)
    base = [{"id": f"a{i:03d}", "title": f"t{i}", "text": doc(rng)} for i in range(60)]
    base.append({"id": "a900", "title": "copy", "text": base[5]["text"]})  # an exact duplicate
    new = [{"id": f"b{i:03d}", "title": f"n{i}", "text": doc(rng)} for i in range(10)]
    new.append({"id": "b900", "title": "copy", "text": base[7]["text"] + " extra"})  # a near duplicate of an old one
    return base, new


def test_a_refresh_writes_a_part_with_only_its_new_rows(tmp_path, corpus):
    base, new = corpus
    run(tmp_path, base, "one")
    first = parts(tmp_path)
    assert len(first) == 1
    logs = run(tmp_path, base + new, "two")
    after = parts(tmp_path)
    assert len(after) == 2 and {k: after[k] for k in first} == first  # the old part untouched
    added = pq.read_table(tmp_path / "layer" / (set(after) - set(first)).pop() / "data.parquet").column("id").to_pylist()
    assert added == sorted(r["id"] for r in new if r["id"] != "b900")  # the near duplicate of an old one is dropped
    assert any("new part p000002 with 10 rows (10 new or changed); 1 part(s) untouched" in m for m in logs)
    assert layer_rows(tmp_path) == full_run(tmp_path, base + new)
    # nothing new: no part written, nothing rewritten
    run(tmp_path, base + new, "three")
    assert parts(tmp_path) == after


def test_changed_and_vanished_rows_rewrite_only_their_parts(tmp_path, corpus):
    base, new = corpus
    run(tmp_path, base, "one")
    run(tmp_path, base + new, "two")
    before = parts(tmp_path)
    old_part, new_part = sorted(before)
    changed = [dict(r) for r in base + new]
    changed[3]["title"] = "a new title, same text"  # a changed row of the first part (not its text)
    del changed[10]  # a vanished row of the first part
    run(tmp_path, changed, "three")
    after = parts(tmp_path)
    assert old_part not in after and after[new_part] == before[new_part]  # only the dirty part went
    got = layer_rows(tmp_path)
    assert got == full_run(tmp_path, changed)
    assert got["a003"][0] == "a new title, same text" and "a010" not in got


def test_parts_are_folded_together_beyond_the_limit(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(PartedLayer, "MAX_PARTS", 3)
    base, _ = corpus
    rows = list(base)
    run(tmp_path, rows, "r0")
    for k in range(5):
        rows = rows + [{"id": f"c{k}{i:02d}", "title": "x", "text": doc(random.Random(100 + 10 * k + i))} for i in range(3)]
        run(tmp_path, rows, f"r{k + 1}")
        assert len(parts(tmp_path)) <= 3
    assert layer_rows(tmp_path) == full_run(tmp_path, rows)


def test_a_run_failing_before_or_after_its_commit_leaves_a_whole_layer(tmp_path, corpus, monkeypatch):
    base, new = corpus
    run(tmp_path, base, "one")
    first = parts(tmp_path)
    run(tmp_path, base + new, "two", fail_at="before_commit")  # staged, never committed
    assert parts(tmp_path) == first
    with pytest.raises(OSError, match="simulated crash"):
        run(tmp_path, base + new, "three", fail_at="after_commit", monkeypatch=monkeypatch)
    monkeypatch.undo()
    assert len(parts(tmp_path)) == 1 and any((tmp_path / "layer" / ".staging").iterdir())
    # committed, but its part never moved in: the next load completes the write
    con = memory_connection()
    PartedLayer(tmp_path / "layer", LAYER).load(con)
    con.close()
    assert len(parts(tmp_path)) == 2 and not any((tmp_path / "layer" / ".staging").iterdir())
    assert layer_rows(tmp_path) == full_run(tmp_path, base + new)


def test_the_old_single_file_layout_is_replaced_by_the_first_run(tmp_path, corpus):
    base, _ = corpus
    legacy = tmp_path / "layer" / "data.parquet"
    legacy.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["zzz"]}), legacy)
    run(tmp_path, base, "one")
    assert not legacy.exists() and len(parts(tmp_path)) == 1
