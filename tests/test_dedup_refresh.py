"""A dedup refresh by difference (stages/dedup/refresh.py) gives what the full pass gives over the
same input and the same history, step after step: random refreshes that add near and exact
duplicates, documents sharing a URL, change texts and quality, and remove documents, run twice
from the same start: once as the stage runs them (by difference), once forced through the full
pass. Real DuckDB, real signatures, the index on disk."""

from __future__ import annotations

import json
import random
import shutil

import pyarrow as pa
import pytest
from test_dedup import edit_words, en_doc, zh_doc

from dataset_platform.stages.dedup import refresh as dedup_refresh
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.stages.dedup.stage import run_dedup
from dataset_platform.storage import memory_connection


def _run(rows: list[dict], index_dir, logs: list[str]):
    con = memory_connection()
    con.register("a", pa.Table.from_pylist(rows))
    con.sql("CREATE TABLE d AS SELECT * FROM a")
    idx = MinHashIndex(index_dir)
    res = run_dedup(con, "d", index=idx, log=logs.append)
    out = {
        "kept": con.sql("SELECT id, content_hash FROM kept ORDER BY id").fetchall(),
        "clusters": con.sql("SELECT * FROM clusters ORDER BY doc_id").fetchall(),
        "rejected": con.sql("SELECT * FROM rejected ORDER BY id").fetchall(),
        "kept_rows": con.sql("SELECT * FROM kept_rows ORDER BY id").fetchall(),
        "counts": (res.input_rows, res.kept_rows, res.rejected_rows, sorted(res.extra.items())),
    }
    idx.commit(con)
    return out


def _step(rng: random.Random, rows: list[dict], serial: list[int]) -> list[dict]:
    """A refresh: a few new documents (originals, near and exact copies, URL mirrors), a few
    texts or qualities changed, a few documents gone."""
    rows = [dict(r) for r in rows]
    for _ in range(rng.randint(1, 6)):
        serial[0] += 1
        i = serial[0]
        base = rng.choice(rows)
        kind = rng.random()
        doc = {"id": f"{i:016x}", "url": f"http://site.test/{i}", "quality": round(rng.random(), 2)}
        if kind < 0.3:
            doc["text"] = edit_words(rng, base["text"]) if " " in base["text"] else base["text"] + "变"
        elif kind < 0.45:
            doc["text"] = base["text"].upper()  # the same normalised text
        elif kind < 0.55:
            doc["text"], doc["url"] = en_doc(rng), base["url"]  # another text at a URL seen before
        elif kind < 0.65:
            doc["text"] = zh_doc(rng)
        else:
            doc["text"] = en_doc(rng)
        rows.append(doc)
    for _ in range(rng.randint(0, 3)):
        r = rng.choice(rows)
        if rng.random() < 0.5:
            r["quality"] = round(rng.random(), 2)
        else:
            r["text"] = edit_words(rng, r["text"]) if rng.random() < 0.5 else en_doc(rng)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(" ".join(r["text"].lower().split()), []).append(r)
    copied = [g for g in groups.values() if len(g) > 1]
    if copied and rng.random() < 0.7:  # the first of a group of exact copies changes or goes
        first = min(rng.choice(copied), key=lambda r: r["id"])
        if rng.random() < 0.5:
            first["text"] = en_doc(rng)
        else:
            rows.remove(first)
    for _ in range(rng.randint(0, 3)):
        rows.remove(rng.choice(rows))
    return sorted(rows, key=lambda r: r["id"])


def _corpus(rng: random.Random) -> list[dict]:
    """120 documents: originals (English, some Chinese), near and exact copies, URL mirrors."""
    rows = []
    for i in range(120):
        r = rng.random()
        doc = {"id": f"{i:016x}", "url": f"http://site.test/{i}", "quality": round(rng.random(), 2)}
        if i > 5 and r < 0.2:
            doc["text"] = edit_words(rng, rows[rng.randrange(i)]["text"])
        elif i > 5 and r < 0.25:
            doc["text"] = rows[rng.randrange(i)]["text"]
        elif i > 5 and r < 0.28:
            doc["text"], doc["url"] = en_doc(rng), rows[rng.randrange(i)]["url"]
        else:
            doc["text"] = en_doc(rng) if r < 0.9 else zh_doc(rng)
        rows.append(doc)
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_refresh_by_difference_equals_the_full_pass_over_many_refreshes(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    rows = _corpus(rng)
    serial = [len(rows)]
    by_diff, by_full = tmp_path / "diff", tmp_path / "full"
    _run(rows, by_diff, [])
    shutil.copytree(by_diff, by_full)
    used, chain = 0, 1
    for _ in range(8):
        rows = _step(rng, rows, serial)
        logs: list[str] = []
        got = _run(rows, by_diff, logs)
        used += any(m.startswith("dedup: refresh by difference") for m in logs)
        with monkeypatch.context() as m:
            m.setattr(dedup_refresh, "refresh_by_difference", lambda *a, **k: None)
            want = _run(rows, by_full, [])
        assert got == want
        chain = max(chain, len(json.loads((by_diff / "index.json").read_text())["state"]))
    assert used == 8  # every refresh went by difference
    assert chain > 1  # ... and appended its changes to the index's state as a delta file


def test_too_many_changes_take_the_full_pass(tmp_path):
    rng = random.Random(4)
    rows = [{"id": f"{i:016x}", "text": en_doc(rng)} for i in range(40)]
    _run(rows, tmp_path / "index", [])
    logs: list[str] = []
    rows += [{"id": f"{i:016x}", "text": en_doc(rng)} for i in range(40, 50)]  # a quarter new
    _run(rows, tmp_path / "index", logs)
    assert not any(m.startswith("dedup: refresh by difference") for m in logs)
    logs = []
    rows.append({"id": f"{99:016x}", "text": edit_words(rng, rows[0]["text"])})
    out = _run(rows, tmp_path / "index", logs)
    assert any(m.startswith("dedup: refresh by difference: 1 new or changed documents, 0 gone") for m in logs)
    assert [c[1:3] for c in out["clusters"]] == [(f"{99:016x}", f"{0:016x}")]


def test_a_repeated_id_is_still_reported_on_a_refresh(tmp_path):
    rng = random.Random(5)
    rows = [{"id": f"{i:016x}", "text": en_doc(rng)} for i in range(40)]
    _run(rows, tmp_path / "index", [])
    with pytest.raises(ValueError, match="repeated ids"):
        _run(rows + [dict(rows[3], text=en_doc(rng))], tmp_path / "index", [])


def test_a_refresh_that_gives_up_midway_still_equals_the_full_pass(tmp_path, monkeypatch):
    """When the changed groups do not close within the allowed rounds, the refresh hands over to
    the full pass after it has updated the state in place: the result is still the full pass's."""
    monkeypatch.setattr(dedup_refresh, "MAX_ROUNDS", 1)
    rng = random.Random(7)
    rows = _corpus(rng)
    serial = [len(rows)]
    by_diff, by_full = tmp_path / "diff", tmp_path / "full"
    _run(rows, by_diff, [])
    shutil.copytree(by_diff, by_full)
    gave_up = 0
    for _ in range(4):
        rows = _step(rng, rows, serial)
        logs: list[str] = []
        got = _run(rows, by_diff, logs)
        gave_up += any("too much changed for a refresh by difference" in m for m in logs)
        with monkeypatch.context() as m:
            m.setattr(dedup_refresh, "refresh_by_difference", lambda *a, **k: None)
            want = _run(rows, by_full, [])
        assert got == want
    assert gave_up
