"""The release costs what changed: shards of the previous version are reused (hard-linked, byte for
byte) when their documents are all still there and unchanged, rewritten when one changed or
left; the diff and the statistics come from ids and fingerprints; the release loads with
Hugging Face ``datasets`` and DuckDB; real DuckDB, real files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataset_platform.config import AugmentSettings, DatasetSettings, ReleaseSettings, SplitSettings
from dataset_platform.release.publish import latest_release, publish_release, release_view_sql
from dataset_platform.release.shards import FOLD_AT, INDEX, SourcePart
from dataset_platform.storage import memory_connection, sql_str, write_parquet

SPLITS = SplitSettings(stratify_by="topic")
BOUND = 6 * 1024  # bytes of text and title per shard: several shards per split
WORDS = "harbour ferry tide garden tomato compost council bridge market river station season".split()


def _doc(i: int, version: int = 0) -> dict:
    text = " ".join(WORDS[(i * 7 + k * (version + 3)) % len(WORDS)] for k in range(30 + i % 20)) + f" {i}.{version}"
    doc_id = hashlib.md5(f"news https://n.test/{i}".encode()).hexdigest()[:16]
    return {"id": doc_id, "source": "news", "url": f"https://n.test/{i}", "title": f"Story {i}", "text": text,
            "lang": "en", "n_chars": len(text), "n_words": text.count(" ") + 1,
            "content_hash": hashlib.md5(text.encode()).hexdigest(), "topic": ("garden", "harbour", "other")[i % 3],
            "topic_source": "rule", "topic_confidence": 0.5}


class Input:
    """The release's input as the decontaminated layer holds it: parts (id-ordered Parquet files)
    with a chain each (same chain, same row for an id)."""

    def __init__(self, root: Path):
        self.root = root
        self.parts: dict[str, tuple[list[dict], str]] = {}

    def put(self, key: str, rows: list[dict], chain: str) -> None:
        self.parts[key] = (sorted(rows, key=lambda r: r["id"]), chain)
        f = self.file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.parts[key][0]), f)

    def file(self, key: str) -> Path:
        return self.root / "layer" / key / "data.parquet"

    def source_parts(self) -> list[SourcePart]:
        return [SourcePart.parquet(k, self.file(k), chain=c, rows=len(r)) for k, (r, c) in sorted(self.parts.items())]


def _publish(root: Path, inp: Input, *, bound: int = BOUND, augment=None, con=None):
    con = con or memory_connection()
    assignments = root / "split_assignments.parquet"
    info = publish_release(
        con, inp.source_parts(), root / "releases", DatasetSettings(name="t"), SPLITS, config_fingerprint="f",
        label_sets=["topic"], release=ReleaseSettings(max_shard_bytes=bound), augment=augment,
        previous_assignments_sql=f"read_parquet({sql_str(assignments)})" if assignments.exists() else None)
    write_parquet(con, "SELECT id, split, group_key FROM split_assignments ORDER BY id", assignments)
    return info


def _inodes(path: Path) -> dict[str, int]:
    return {f.name: f.stat().st_ino for f in sorted((path / "data").glob("*.parquet"))}


def _rows(path: Path) -> dict[str, tuple]:
    con = duckdb.connect()
    try:
        return {r[0]: r[1:] for r in con.sql(f"SELECT id, split, text, topic, augmented_from FROM {release_view_sql(path)}").fetchall()}
    finally:
        con.close()


def _shard_ids(path: Path) -> dict[str, set]:
    return {f.name: set(pq.read_table(f, columns=["id"]).column("id").to_pylist())
            for f in sorted((path / "data").glob("*.parquet"))}


@pytest.fixture
def first(tmp_path):
    inp = Input(tmp_path)
    for k in range(3):
        inp.put(f"news/p{k}", [_doc(i) for i in range(k * 100, k * 100 + 100)], chain=f"c{k}")
    return inp, _publish(tmp_path, inp)


def test_a_refresh_hard_links_every_unchanged_shard_and_writes_only_the_new_documents(tmp_path, first):
    inp, v1 = first
    old = _inodes(v1.path)
    assert len([n for n in old if n.startswith("train-")]) >= 3  # several shards to reuse
    inp.put("news/p3", [_doc(i) for i in range(300, 303)], chain="c3")  # +1 %
    v2 = _publish(tmp_path, inp)
    assert v2.version != v1.version and v2.previous == v1.version
    new = _inodes(v2.path)
    # every shard of v1 is in v2 as the same file (hard link: same inode, no copy, no rewrite)
    assert sorted(old.values()) == sorted(i for i in new.values() if i in set(old.values()))
    assert v2.shards["reused"] == len(old) - sum(1 for n in old if _rows_in(v1.path / "data" / n) == 0)
    written = [n for n, i in new.items() if i not in set(old.values())]
    added = {_doc(i)["id"] for i in range(300, 303)}
    assert set().union(*(_shard_ids(v2.path)[n] for n in written)) == added  # only the new documents
    assert v2.shards["rows_written"] == 3 and v2.diff == {"added": 3, "removed": 0, "changed": 0}
    # the split groups were recomputed for the new documents only (release/split.py, by difference)
    assert v2.shards["split_by_difference"] and v2.shards["split_recomputed"] == 3
    # the manifest's sha256, rows and bytes (taken from v1 for the reused shards) are true
    manifest = json.loads((v2.path / "manifest.json").read_text())
    for rel, meta in manifest["files"].items():
        f = v2.path / rel
        assert hashlib.sha256(f.read_bytes()).hexdigest() == meta["sha256"] and f.stat().st_size == meta["bytes"]
        assert pq.read_metadata(f).num_rows == meta["rows"]
    rows = _rows(v2.path)
    assert len(rows) == 303 and all(rows[i][0] == s for i, s in _splits(v1.path).items())  # splits kept
    # shards keep their names' order: every split numbered 0..n-1 of n
    for split in ("train", "validation", "test"):
        names = sorted(n for n in new if n.startswith(split + "-"))
        assert names == [f"{split}-{i:05d}-of-{len(names):05d}.parquet" for i in range(len(names))]


def _rows_in(f: Path) -> int:
    return pq.read_metadata(f).num_rows


def _splits(path: Path) -> dict[str, str]:
    return {i: r[0] for i, r in _rows(path).items()}


def test_unchanged_parts_are_not_read_again(tmp_path, first):
    """A part whose chain the previous release consumed holds the same rows: its texts are not
    read (here they are garbled on disk, chain kept: the release does not change)."""
    inp, v1 = first
    rows, chain = inp.parts["news/p0"]
    inp.put("news/p0", [{**r, "text": "garbled"} for r in rows], chain=chain)
    again = _publish(tmp_path, inp)
    assert again.version == v1.version and again.created is False  # nothing read, nothing written
    assert latest_release(tmp_path / "releases", "t") == v1.path
    assert all(r[1] != "garbled" for r in _rows(v1.path).values())


def test_a_shard_that_lost_or_changed_a_document_is_rewritten_and_only_that_one(tmp_path, first):
    inp, v1 = first
    before = _shard_ids(v1.path)
    old_inode = _inodes(v1.path)
    rows0, c0 = inp.parts["news/p0"]
    rows1, _ = inp.parts["news/p1"]
    gone, changed = rows0[5]["id"], rows1[7]["id"]
    n_changed = int(rows1[7]["url"].rsplit("/", 1)[1])
    inp.put("news/p0", rows0[:5] + rows0[6:], chain=c0)  # a document left (same chain, fewer ids)
    inp.put("news/p1", [(_doc(n_changed, version=1) if r["id"] == changed else r) for r in rows1], chain="c1-relabelled")
    v2 = _publish(tmp_path, inp)
    assert v2.diff == {"added": 0, "removed": 1, "changed": 1}
    hit = {n for n, ids in before.items() if gone in ids or changed in ids}
    assert 1 <= len(hit) <= 2
    after_ids, after_inode = _shard_ids(v2.path), _inodes(v2.path)
    reused = {n for n, i in after_inode.items() if i in set(old_inode.values())}
    old_by_inode = {i: n for n, i in old_inode.items()}
    # every shard without the two documents is reused; the ones holding them are not
    assert {old_by_inode[after_inode[n]] for n in reused} == {n for n in before if n not in hit and before[n]}
    rewritten_ids = set().union(*(after_ids[n] for n in after_ids if n not in reused))
    assert rewritten_ids == set().union(*(before[n] for n in hit)) - {gone}
    rows = _rows(v2.path)
    assert gone not in rows and rows[changed][1] == _doc(n_changed, version=1)["text"]
    assert v2.shards["fingerprinted"] == 100  # the relabelled part's documents, read once to compare
    diff = dict(duckdb.sql(f"SELECT id, change FROM read_parquet('{v2.path / 'diff.parquet'}')").fetchall())
    assert diff == {gone: "removed", changed: "changed"}


def test_the_release_loads_with_datasets_and_duckdb_after_refreshes(tmp_path, first):
    import datasets

    inp, v1 = first
    inp.put("news/p3", [_doc(i) for i in range(300, 340)], chain="c3")
    v2 = _publish(tmp_path, inp)
    assert v2.shards["reused"] > 0 and v2.shards["written"] > 0
    files = {s: sorted(str(p) for p in (v2.path / "data").glob(f"{s}-*.parquet")) for s in ("train", "validation", "test")}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    assert {k: v.num_rows for k, v in ds.items()} == v2.rows and sum(v2.rows.values()) == 340
    assert ds["train"].column_names == ["id", "source", "url", "title", "text", "lang", "topic", "topic_source",
                                        "topic_confidence", "augmented_from"]
    got = {r["id"]: r["text"] for split in ds.values() for r in split}
    assert got == {d["id"]: d["text"] for d in (_doc(i) for i in range(340))}
    counts = dict(duckdb.sql(f"SELECT split, count(*) FROM {release_view_sql(v2.path)} GROUP BY 1").fetchall())
    assert counts == v2.rows
    card = (v2.path / "README.md").read_text()
    assert "path: data/train-*.parquet" in card and "reuses the previous version" in card


def test_the_same_history_gives_the_same_bytes_and_a_rebuild_the_same_rows(tmp_path):
    def history(root: Path, run: str = "") -> list:
        inp = Input(root)
        out = []
        for k in range(4):
            inp.put(f"news/{run}p{k}", [_doc(i) for i in range(k * 80, k * 80 + 80)], chain=f"{run}c{k}")
            out.append(_publish(root, inp))
        return out

    # the second run's parts have other keys and chains (crawl ids are times): the versions, run
    # bookkeeping aside, depend on the content only
    a, b = history(tmp_path / "a"), history(tmp_path / "b", run="2026-12-01T10:00:00Z-")
    assert [x.version for x in a] == [x.version for x in b]
    assert all(x.shards == y.shards for x, y in zip(a, b))
    for x, y in zip(a, b):
        for f in sorted(x.path.rglob("*")):
            if f.is_file():
                assert f.read_bytes() == (y.path / f.relative_to(x.path)).read_bytes(), f
    # a rebuild from scratch of the final input: the same rows in the same splits (the shards may
    # be cut elsewhere), because the splits keep their history
    scratch = Input(tmp_path / "c")
    for k in range(4):
        scratch.put(f"news/p{k}", [_doc(i) for i in range(k * 80, k * 80 + 80)], chain=f"c{k}")
    (tmp_path / "c" / "split_assignments.parquet").write_bytes((tmp_path / "a" / "split_assignments.parquet").read_bytes())
    rebuilt = _publish(tmp_path / "c", scratch)
    assert _rows(rebuilt.path) == _rows(a[-1].path) and rebuilt.rows == a[-1].rows
    assert rebuilt.shards["reused"] == 0 and rebuilt.stats["labels"] == a[-1].stats["labels"]


def test_small_shards_are_folded_so_the_files_stay_bounded(tmp_path):
    inp = Input(tmp_path)
    folded = 0
    for k in range(FOLD_AT + 4):  # many small refreshes: each writes a small shard per split
        inp.put(f"news/p{k:02d}", [_doc(i) for i in range(k * 20, k * 20 + 20)], chain=f"c{k}")
        info = _publish(tmp_path, inp, bound=64 * 1024)
        folded += info.shards["folded"]
        for split in ("train", "validation", "test"):
            assert len(list((info.path / "data").glob(f"{split}-*.parquet"))) <= FOLD_AT + 1
    assert folded >= FOLD_AT
    assert sorted(_rows(info.path)) == sorted(_doc(i)["id"] for i in range((FOLD_AT + 4) * 20))


def test_a_previous_release_without_index_is_diffed_by_reading_it_and_rewritten_once(tmp_path, first):
    inp, v1 = first
    (v1.path / INDEX).unlink()  # as a release written before the index existed
    inp.put("news/p3", [_doc(i) for i in range(300, 310)], chain="c3")
    v2 = _publish(tmp_path, inp)
    assert v2.shards["reused"] == 0 and v2.diff == {"added": 10, "removed": 0, "changed": 0}
    inp.put("news/p4", [_doc(i) for i in range(310, 312)], chain="c4")
    v3 = _publish(tmp_path, inp)  # v2 has its index: reuse resumes
    assert v3.shards["reused"] >= 3 and v3.shards["rows_written"] == 2


def test_without_hard_links_reused_shards_are_copied(tmp_path, first, monkeypatch):
    inp, v1 = first

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    inp.put("news/p3", [_doc(300)], chain="c3")
    v2 = _publish(tmp_path, inp)
    old = {hashlib.sha256(f.read_bytes()).hexdigest(): f.stat().st_ino for f in (v1.path / "data").glob("*.parquet")}
    copies = [f for f in (v2.path / "data").glob("*.parquet") if hashlib.sha256(f.read_bytes()).hexdigest() in old]
    assert len(copies) == v2.shards["reused"] > 0
    assert all(f.stat().st_ino not in old.values() for f in copies)


def test_augmented_copies_stay_with_their_original_across_refreshes(tmp_path):
    inp = Input(tmp_path)
    aug = AugmentSettings(enabled=True, copies=2, seed=1)
    inp.put("news/p0", [_doc(i) for i in range(200)], chain="c0")
    v1 = _publish(tmp_path, inp, augment=aug)
    inp.put("news/p1", [_doc(i) for i in range(200, 204)], chain="c1")
    v2 = _publish(tmp_path, inp, augment=aug)
    assert v2.shards["reused"] > 0
    for path in (v1.path, v2.path):
        rows = _rows(path)
        copies = {i: r for i, r in rows.items() if r[3] is not None}
        assert copies and all(r[0] == "train" and rows[r[3]][0] == "train" for r in copies.values())
        for f in (path / "data").glob("train-*.parquet"):  # each copy right after its original (or its copies)
            t = pq.read_table(f, columns=["id", "augmented_from"]).to_pylist()
            last = None
            for r in t:
                if r["augmented_from"] is None:
                    last = r["id"]
                else:
                    assert r["augmented_from"] == last
    n_copies = sum(1 for r in _rows(v2.path).values() if r[3] is not None)
    assert v2.stats["augmentation"]["rows"] == n_copies
    # the same input augmented from scratch gives the same copies
    scratch = Input(tmp_path / "scratch")
    scratch.put("news/p0", [_doc(i) for i in range(204)], chain="c0")
    (tmp_path / "scratch" / "split_assignments.parquet").write_bytes((tmp_path / "split_assignments.parquet").read_bytes())
    assert _rows(_publish(tmp_path / "scratch", scratch, augment=aug).path) == _rows(v2.path)


def test_no_text_is_held_in_duckdb(tmp_path, first):
    inp, _ = first
    con = memory_connection()
    inp.put("news/p3", [_doc(i) for i in range(300, 330)], chain="c3")
    _publish(tmp_path, inp, con=con, augment=AugmentSettings(enabled=True))
    with_text = con.sql("SELECT table_name FROM duckdb_columns() WHERE column_name IN ('text', 'title')").fetchall()
    assert with_text == []


def test_the_release_is_profiled_from_its_index_as_from_its_texts(tmp_path, first):
    from dataset_platform.checks.profile import profile
    from dataset_platform.release.publish import release_profile_sql

    inp, _ = first
    inp.put("news/p3", [_doc(i) for i in range(300, 320)], chain="c3")
    info = _publish(tmp_path, inp, augment=AugmentSettings(enabled=True, copies=2))
    con = duckdb.connect()
    assert "text" not in con.sql(f"SELECT * FROM {release_profile_sql(info.path)} LIMIT 0").columns
    assert profile(con, release_profile_sql(info.path)) == profile(con, release_view_sql(info.path))


def test_without_the_run_bookkeeping_documents_are_read_once_and_shards_still_reused(tmp_path, first):
    inp, v1 = first
    for f in (tmp_path / "releases" / "t").glob(f".{v1.version}.parts.*"):
        f.unlink()
    inp.put("news/p3", [_doc(i) for i in range(300, 303)], chain="c3")
    v2 = _publish(tmp_path, inp)
    assert v2.shards["fingerprinted"] == 300  # nothing known unchanged: every old document read once
    assert v2.shards["reused"] == v1.shards["written"] and v2.shards["rows_written"] == 3
    inp.put("news/p4", [_doc(303)], chain="c4")
    assert _publish(tmp_path, inp).shards["fingerprinted"] == 0  # v2 has its bookkeeping


# ---------------------------------------------------------------- the dataset card


def _load_with_datasets(path: Path, cache: Path, caplog) -> tuple:
    """Read the card as Hugging Face does (``huggingface_hub.DatasetCard``, ``datasets``' metadata
    reader) and load the release through it (``load_dataset_builder(folder)``: the card's configs,
    its ``dataset_info`` checked against the rows read); returns (card data, the card's
    DatasetInfo, the builder after loading, the dataset, what was warned)."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    caplog.clear()
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card = DatasetCard.load(path / "README.md")
        infos = DatasetInfosDict.from_directory(str(path))
        builder = datasets.load_dataset_builder(str(path), cache_dir=str(cache))
        builder.download_and_prepare()  # BASIC_CHECKS: the splits' sizes against the card's
        ds = builder.as_dataset()
    warned = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    warned += [f"{w.category.__name__}: {w.message}" for w in caught
               if any(m in (w.filename or "") for m in ("datasets", "huggingface_hub"))]
    return card.data, infos.get("default"), builder, ds, warned


def _assert_card_matches_the_rows(path: Path, tmp_path: Path, caplog, cache: str) -> dict:
    data, info, builder, ds, warned = _load_with_datasets(path, tmp_path / cache, caplog)
    assert warned == []
    manifest = json.loads((path / "manifest.json").read_text())
    # the languages are those of the released rows (``und``: none identified)
    langs = [r[0] for r in duckdb.sql(f"SELECT DISTINCT lang FROM {release_view_sql(path)} "
                                      "WHERE lang <> 'und' ORDER BY 1").fetchall()]
    assert (data.get("language") or []) == langs
    # sizes: rows, the size category, and the bytes datasets computes when it loads each split
    # (datasets cannot build an empty split: the card offers the splits with rows)
    rows = {s: n for s, n in manifest["rows"].items() if n}
    assert {s: v.num_rows for s, v in ds.items()} == rows and [c["split"] for c in data["configs"][0]["data_files"]] == [
        s for s in ("train", "validation", "test") if s in rows]
    assert data["size_categories"] == ["n<1K"] and manifest["total_rows"] < 1000
    assert info is not None and info.splits is not None  # parsed, not ignored
    computed = {s: builder.info.splits[s].num_bytes for s in rows}
    assert {s: info.splits[s].num_bytes for s in info.splits} == computed
    assert {s: info.splits[s].num_examples for s in info.splits} == rows
    assert info.dataset_size == sum(computed.values()) and computed["train"] > 0
    assert info.download_size == sum(f.stat().st_size for f in (path / "data").glob("*.parquet"))
    return computed


def test_the_card_states_the_rows_languages_and_sizes_and_datasets_reads_it_without_a_warning(tmp_path, first, caplog):
    inp, v1 = first  # English only
    assert "zh" not in (v1.path / "README.md").read_text().split("---")[1]
    _assert_card_matches_the_rows(v1.path, tmp_path, caplog, "hf1")
    # a refresh reuses shards: their bytes come from the previous manifest, and still match
    inp.put("news/p3", [_doc(i) for i in range(300, 340)], chain="c3")
    v2 = _publish(tmp_path, inp)
    assert v2.shards["reused"] > 0
    _assert_card_matches_the_rows(v2.path, tmp_path, caplog, "hf2")
    # a previous manifest without the Arrow bytes (a version written before them): measured once
    manifest = json.loads((v2.path / "manifest.json").read_text())
    for meta in manifest["files"].values():
        del meta["arrow_bytes"]
    (v2.path / "manifest.json").write_text(json.dumps(manifest))
    inp.put("news/p4", [_doc(i) for i in range(340, 345)], chain="c4")
    v3 = _publish(tmp_path, inp)
    assert v3.shards["reused"] > 0
    _assert_card_matches_the_rows(v3.path, tmp_path, caplog, "hf3")


def test_a_mixed_release_lists_each_language_of_its_rows(tmp_path, caplog):
    inp = Input(tmp_path)
    langs = ("en", "zh", "no", "und")  # "no" (Norwegian) must stay a string in YAML; und is no language
    inp.put("mix/p0", [{**_doc(i), "lang": langs[i % 4]} for i in range(60)], chain="m0")
    info = _publish(tmp_path, inp)
    _assert_card_matches_the_rows(info.path, tmp_path, caplog, "hf")
    from huggingface_hub import DatasetCard

    assert DatasetCard.load(info.path / "README.md").data.language == ["en", "no", "zh"]
    assert "| train | zh |" in (info.path / "README.md").read_text()  # the languages table of the body


def test_a_release_with_an_empty_split_loads_with_datasets(tmp_path, caplog):
    inp = Input(tmp_path)
    inp.put("news/p0", [_doc(i) for i in range(2)], chain="c0")
    info = _publish(tmp_path, inp)
    empty = [s for s, n in info.rows.items() if n == 0]
    assert empty and all(pq.ParquetFile(info.path / "data" / f"{s}-00000-of-00001.parquet").num_row_groups == 0
                         for s in empty)  # the empty split still has its file, with no row group
    assert set(_assert_card_matches_the_rows(info.path, tmp_path, caplog, "hf")) == {"train"}
    counts = dict(duckdb.sql(f"SELECT split, count(*) FROM {release_view_sql(info.path)} GROUP BY 1").fetchall())
    assert counts == {"train": 2}


def test_the_warning_check_sees_a_malformed_card(tmp_path, first, caplog):
    """The check above can fail: the card as it was (splits without ``num_bytes``) is reported."""
    _, v1 = first
    card = (v1.path / "README.md").read_text()
    (v1.path / "README.md").write_text("\n".join(ln for ln in card.splitlines() if "num_bytes" not in ln) + "\n")
    *_, warned = _load_with_datasets(v1.path, tmp_path / "hf", caplog)
    assert any("malformed" in w for w in warned)


def test_size_categories_follow_hugging_face_names():
    from dataset_platform.release.publish import size_category

    assert [size_category(n) for n in (0, 999, 1000, 99_999, 100_000, 1_000_000, 25_000_000, 10**13)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "n>1T"]
