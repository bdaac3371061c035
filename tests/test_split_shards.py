"""``release/split_shards.py``: the split's allocation as shard tasks gives the single query's
splits, group keys, assignments and statistics, for any number of shards, on first runs, refreshes
and refreshes by difference."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pytest
from test_split import STRAT, _docs, _last_run, _load, _refresh_world

from dataset_platform.config import SplitSettings
from dataset_platform.release import split_shards
from dataset_platform.release.split import assign_splits
from dataset_platform.stages.base import Tasks
from dataset_platform.stages.dedup.shards import MIN_TASK_MEMORY
from dataset_platform.storage import memory_connection


def _sharded(monkeypatch, n: int, shards: int, calls: list, run=None) -> Tasks:
    """Tasks that cut ``n`` documents into ``shards`` shards (one task holds ceil(n / shards)), as on
    a cluster; ``calls`` receives each ``allocate_in_shards``'s shard count."""
    per_shard = math.ceil(n / shards)
    monkeypatch.setattr(split_shards, "SPLIT_ROW_BYTES", MIN_TASK_MEMORY // per_shard)
    allocate = split_shards.allocate_in_shards
    monkeypatch.setattr(split_shards, "allocate_in_shards",
                        lambda *a, **k: calls.append(allocate(*a, **k)) or calls[-1])
    kw = {"run": run} if run is not None else {}
    return Tasks(memory_bytes=MIN_TASK_MEMORY, threads=1, where="test", **kw)


def _state(con) -> tuple:
    return (con.sql("SELECT id, split, group_key FROM split_docs ORDER BY id").fetchall(),
            con.sql("SELECT * FROM split_assignments ORDER BY id").fetchall())


SETTINGS = [STRAT, SplitSettings(group_by=["domain"], stratify_by="topic"), SplitSettings(group_by=["cluster"])]


@pytest.mark.parametrize("shards", [1, 3, 8])
@pytest.mark.parametrize("settings", SETTINGS, ids=["cluster+url", "domain", "cluster"])
def test_the_allocation_in_shards_is_the_single_querys_through_refreshes(tmp_path, monkeypatch, settings, shards):
    rng = np.random.default_rng(5)
    docs = {d["id"]: d for d in _docs(3000, seed=6)}
    # a few groups whose members carry two topics (a URL shared across topics): the mixed groups
    # that are filled first, at the plain ratios
    ids = sorted(docs)
    for k in range(40):
        a, b = docs[ids[7 * k]], docs[ids[7 * k + 3]]
        b["url"], b["topic"] = a["url"], "law" if a["topic"] != "law" else "arts"
    con = memory_connection()
    calls: list = []
    tasks = _sharded(monkeypatch, len(docs), shards, calls)
    _load(con, "docs", list(docs.values()))
    want = assign_splits(con, "docs", settings)
    want_state = _state(con)
    got = assign_splits(con, "docs", settings, tasks=tasks, shard_folder=tmp_path / "split")
    assert _state(con) == want_state and got == want
    assert calls[-1] == shards if shards > 1 else not calls  # (one shard: the single query)
    assert not (tmp_path / "split").exists()  # the shard files go once read
    for step in range(3):
        new = _refresh_world(rng, docs, step)
        _last_run(con, docs, new)
        docs = new
        _load(con, "docs", list(docs.values()))
        for last_run in (None, "last_run"):
            want = assign_splits(con, "docs", settings, previous_sql="prev", last_run_sql=last_run)
            want_state = _state(con)
            got = assign_splits(con, "docs", settings, previous_sql="prev", last_run_sql=last_run, tasks=tasks,
                                shard_folder=tmp_path / "split")
            assert _state(con) == want_state, (step, last_run)
            assert got == want, (step, last_run)
    assert want.kept_from_previous and want.new  # (old documents kept, new ones placed)


def test_shard_tasks_run_in_other_processes_and_each_shard_holds_a_stretch_of_the_fill_order(tmp_path, monkeypatch):
    """The tasks are plain data and module-level functions (what a Ray worker runs): here in spawned
    processes; a shard's groups come before the next shard's in ``md5(salt:group_key)`` order."""
    docs = _docs(2000, seed=9)
    con = memory_connection()
    _load(con, "docs", docs)
    want = assign_splits(con, "docs", STRAT)
    want_state = _state(con)
    seen: list = []
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        def run(fn, items):
            seen.extend(items)
            return pool.map(fn, items)

        calls: list = []
        tasks = _sharded(monkeypatch, len(docs), 4, calls, run=run)
        assert assign_splits(con, "docs", STRAT, tasks=tasks, shard_folder=tmp_path / "split") == want
    assert _state(con) == want_state and calls == [4]
    assert sorted({t.round for t in seen}) == [1, 2, 3] and len({t.shard for t in seen}) == 4
    # the groups of each shard, by the hash that orders the fill: shard ranges do not overlap
    hashes = con.sql(f"""
        SELECT least(3, floor(CAST(('0x' || left(h, 15)) AS UBIGINT) / 1152921504606846976.0 * 4))::INT AS shard,
               min(h), max(h)
        FROM (SELECT DISTINCT md5({STRAT.salt!r} || ':' || group_key) AS h FROM split_docs) GROUP BY 1 ORDER BY 1
    """).fetchall()
    assert [s for s, *_ in hashes] == [0, 1, 2, 3]
    assert all(hashes[i][2] < hashes[i + 1][1] for i in range(3))


def test_on_this_machine_the_allocation_stays_one_query(tmp_path, monkeypatch):
    """``tasks.where == 'local'`` (or no tasks): the single query, whatever the size; on a cluster,
    shards once the documents exceed one task."""
    con = memory_connection()
    _load(con, "docs", _docs(500, seed=3))
    assert split_shards.shard_count(500, 1) == 1  # (the floor of a task's memory holds 500 rows)
    assert split_shards.shard_count(10**9, 10**9, 4) == math.ceil(10**9 / (10**9 // split_shards.SPLIT_ROW_BYTES))
    monkeypatch.setattr(split_shards, "SPLIT_ROW_BYTES", MIN_TASK_MEMORY // 100)  # (100 documents a task)

    class Sharded(Exception):
        pass

    def stand_in(*_a, **_k):
        raise Sharded

    monkeypatch.setattr(split_shards, "allocate_in_shards", stand_in)
    want = assign_splits(con, "docs", STRAT)
    for tasks in (Tasks(memory_bytes=MIN_TASK_MEMORY, threads=1), None):  # (here: never the shards)
        assert assign_splits(con, "docs", STRAT, tasks=tasks, shard_folder=tmp_path / "s") == want
    with pytest.raises(Sharded):  # on a cluster, 500 documents of 100 a task: the shards
        assign_splits(con, "docs", STRAT, tasks=Tasks(memory_bytes=MIN_TASK_MEMORY, threads=1, where="test"),
                      shard_folder=tmp_path / "s")
