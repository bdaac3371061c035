"""Dedup at scale: band keys in shards verified as independent tasks, clusters as connected
components in DuckDB rounds. However the work is cut, and wherever the tasks run, the decision is
the same."""

from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components
from test_dedup import edit_words, en_doc

from dataset_platform.stages.base import Tasks
from dataset_platform.stages.dedup import shards
from dataset_platform.stages.dedup.components import connected_components
from dataset_platform.stages.dedup.index import MinHashIndex
from dataset_platform.stages.dedup.stage import run_dedup
from dataset_platform.storage import memory_connection

# ------------------------------------------------------------------ connected components


def _components(a: np.ndarray, b: np.ndarray, in_memory_edges: int = 0) -> tuple[dict[int, int], int]:
    con = duckdb.connect()
    con.register("e", pa.table({"a": pa.array(a.astype(np.int32)), "b": pa.array(b.astype(np.int32))}))
    rounds = connected_components(con, "SELECT a, b FROM e", "cc", in_memory_edges=in_memory_edges)
    return dict(con.sql("SELECT node, comp FROM cc").fetchall()), rounds


def _expected(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    """Every node of the edges -> the smallest node of its component, by scipy."""
    n = int(max(a.max(), b.max())) + 1
    _, label = scipy_components(coo_matrix((np.ones(a.size), (a, b)), shape=(n, n)), directed=False)
    nodes = np.unique(np.concatenate([a, b]))
    smallest: dict[int, int] = {}
    for v in nodes:
        smallest.setdefault(int(label[v]), int(v))  # (nodes ascend: the first seen is the smallest)
    return {int(v): smallest[int(label[v])] for v in nodes}


def _graph(shape: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Edges (a, b) over ``n`` nodes of a given shape."""
    if shape == "random_forest":
        return rng.integers(0, n, n * 3 // 5), rng.integers(0, n, n * 3 // 5)
    if shape == "giant_component":
        return rng.integers(0, n, n * 3), rng.integers(0, n, n * 3)
    if shape == "stars":
        a = rng.integers(0, n, n // 2)
        return a, a // 9
    if shape == "shuffled_path":  # the worst case for propagation alone: diameter n
        p = rng.permutation(n)
        return p[:-1], p[1:]
    return np.arange(n - 1)[::-1], np.arange(1, n)[::-1]


@pytest.mark.parametrize("shape", ["random_forest", "giant_component", "stars", "shuffled_path", "ordered_path"])
def test_components_in_duckdb_rounds_are_scipys_with_the_smallest_node_as_label(shape):
    a, b = _graph(shape, 20_000, np.random.default_rng(3))
    got, rounds = _components(a, b)  # in DuckDB rounds (no edge in memory)
    assert got == _expected(a, b)
    assert 0 < rounds <= 30  # hooking and pointer jumping: rounds grow with log(n), not with the diameter
    assert _components(a, b, in_memory_edges=10**9) == (got, 0)  # in memory: the same labels


@pytest.mark.parametrize("in_memory_edges", [0, 10**9])
def test_components_ignore_self_loops_and_repeated_edges(in_memory_edges):
    got, _ = _components(np.array([5, 5, 7, 9, 9]), np.array([5, 7, 5, 9, 10]), in_memory_edges)
    assert got == {5: 5, 7: 5, 9: 9, 10: 9}
    assert _components(np.array([3]), np.array([3]), in_memory_edges)[0] == {}  # (no edge but a self-loop)


def _in_shards(tmp_path, a: np.ndarray, b: np.ndarray, shards: int, run=None) -> tuple[dict[int, int], int]:
    """The components in ``shards`` shards of tasks (run here, or with ``run``)."""
    from dataset_platform.stages.dedup import components

    con = duckdb.connect()
    con.register("e", pa.table({"a": pa.array(a.astype(np.int64)), "b": pa.array(b.astype(np.int64))}))
    tasks = Tasks(memory_bytes=10**9, threads=1, where="test", min_tasks=shards, **({"run": run} if run else {}))
    folder = tmp_path / "cc"
    rounds = components.components_in_shards(con, "SELECT a, b FROM e", "cc", folder, tasks)
    assert not folder.exists()  # (its files go once read)
    return dict(con.sql("SELECT node, comp FROM cc").fetchall()), rounds


@pytest.mark.parametrize("shards", [1, 4])
@pytest.mark.parametrize("shape", ["random_forest", "giant_component", "stars", "shuffled_path"])
def test_components_in_shard_tasks_are_the_rounds_in_one_process(tmp_path, shape, shards):
    """The rounds cut into waves of shard tasks (no task holds more than its shard of the edges)
    give scipy's components, round for round the single process's labels."""
    a, b = _graph(shape, 3_000, np.random.default_rng(4))
    a, b = a[a != b], b[a != b]  # (a node with a self-loop only is no node of the graph: tested below)
    got, rounds = _in_shards(tmp_path, a, b, shards)
    assert got == _expected(a, b)
    assert rounds == _components(a, b)[1]


def test_component_waves_run_in_other_processes_and_a_cluster_takes_them_beyond_one_task(tmp_path, monkeypatch):
    from dataset_platform.stages.dedup import components

    seen = []
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        def run(fn, items):
            seen.extend(items)
            return pool.map(fn, items)

        got, _ = _in_shards(tmp_path, np.array([5, 5, 7, 9, 9, 12]), np.array([5, 7, 5, 9, 10, 12]), 3, run)
    assert got == {5: 5, 7: 5, 9: 9, 10: 9}  # (self-loops and repeated edges ignored)
    assert {t.wave for t in seen} == {0, 1, 2, 3, 4} and {t.shard for t in seen} == {0, 1, 2}
    # which path ``connected_components`` takes: shard tasks only on a cluster, beyond one task
    calls = []
    in_shards = components.components_in_shards
    monkeypatch.setattr(components, "components_in_shards", lambda *a, **k: calls.append(1) or in_shards(*a, **k))
    con = duckdb.connect()
    con.sql("CREATE TABLE e AS SELECT i AS a, i + 1 AS b FROM range(100) t(i)")
    cluster = Tasks(memory_bytes=10**9, threads=1, where="test", min_tasks=2)
    for tasks, edge_bytes, sharded in ((None, 10**7, False), (Tasks(memory_bytes=1, threads=1), 10**7, False),
                                       (cluster, components.EDGE_BYTES, False), (cluster, 2 * 10**7, True)):
        monkeypatch.setattr(components, "EDGE_BYTES", edge_bytes)  # (20 MB an edge: 50 of the 100 a 1 GB task)
        calls.clear()
        connected_components(con, "SELECT a, b FROM e", "cc", tasks=tasks, folder=tmp_path / "cc2")
        assert bool(calls) == sharded and con.sql("SELECT count(DISTINCT comp) FROM cc").fetchall() == [(1,)]


# ------------------------------------------------------------------ shards


@pytest.fixture(scope="module")
def chains():
    """400 distinct English documents; 80 of them with 1-3 near copies, each copy made from the
    previous one (chains: a cluster whose ends may be further apart than the threshold)."""
    rng = random.Random(11)
    rows = []
    for i in range(400):
        text = en_doc(rng, paragraphs=4)
        rows.append({"id": f"doc{i:04d}", "text": text, "lang": "en"})
        if i % 5 == 0:
            for c in range(1 + i % 3):
                text = edit_words(rng, text, every=45)
                rows.append({"id": f"doc{i:04d}-c{c}", "text": text, "lang": "en"})
    return rows


def _run(rows, tasks: Tasks | None, index: MinHashIndex | None = None, log=None):
    con = memory_connection()
    con.register("docs", pa.Table.from_pylist(rows))
    res = run_dedup(con, "docs", tasks=tasks, index=index, log=log)
    out = {
        "kept": con.sql("SELECT id FROM kept ORDER BY id").fetchall(),
        "clusters": con.sql("SELECT * FROM clusters ORDER BY doc_id").fetchall(),
        "rejected": con.sql("SELECT * FROM rejected ORDER BY id").fetchall(),
        "edges": con.sql("SELECT * FROM _index_edges_out ORDER BY a_id, b_id").fetchall(),
    }
    return res, out, con


def _spawned(fn, items):
    """Each task in a process of its own (as a worker on another machine would run it)."""
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        yield from pool.map(fn, items)


def test_the_decision_does_not_depend_on_the_number_of_shards_or_where_they_run(chains):
    logs: list[str] = []
    res, one, _ = _run(chains, Tasks(memory_bytes=2 * 10**9, threads=2), log=logs.append)
    assert any(m.endswith("in 1 shard") for m in logs)
    near = [c for c in one["clusters"] if c[4] == "near"]
    assert len(near) >= 100 and res.balanced  # every copy of a chain found, and accounted for
    assert all("-c" in c[1] for c in near)  # only copies go (the smallest id of its chain stays)
    assert len({c[2] for c in near}) >= 70  # most of the 80 chains found
    for tasks in (Tasks(memory_bytes=2 * 10**9, threads=1, min_tasks=7),  # more shards than needed
                  Tasks(memory_bytes=200 * shards.BAND_ROW_BYTES, threads=1),  # memory for 200 band rows a task
                  Tasks(memory_bytes=10**9, threads=1, min_tasks=3, run=_spawned, where="spawned")):
        logs.clear()
        _, out, _ = _run(chains, tasks, log=logs.append)
        assert out == one, tasks
        cut = [m for m in logs if "candidate pairs verified (estimated" in m][0]
        assert int(cut.rsplit("in ", 1)[1].split()[0]) >= max(3, tasks.min_tasks)
    assert any("(spawned)" in m for m in logs)


def test_near_duplicate_clusters_joined_in_shard_tasks_keep_the_same_documents(tmp_path, chains, monkeypatch):
    """On a cluster whose tasks hold fewer edges than dedup verified, the clusters' components run
    as shard tasks (in spawned processes here), on the index's path: the same decision."""
    from dataset_platform.stages.dedup import components

    _, one, _ = _run(chains, None, index=MinHashIndex(tmp_path / "one"))
    monkeypatch.setattr(components, "EDGE_BYTES", 10**7)  # (a 1 GB task holds 100 edges)
    logs: list[str] = []
    _, out, _ = _run(chains, Tasks(memory_bytes=10**9, threads=1, min_tasks=2, run=_spawned, where="spawned"),
                     index=MinHashIndex(tmp_path / "two"), log=logs.append)
    assert out == one
    cut = [m for m in logs if m.startswith("components: ")]
    assert len(cut) == 1 and " in 2 shard(s)" in cut[0] and "(spawned)" in cut[0], logs
    assert not (tmp_path / "two.components").exists()


def test_on_a_cluster_each_input_file_is_scanned_by_a_task_with_the_same_decision(tmp_path, chains):
    """dedup's scan (every text normalised and hashed, in input order) as a task per input file,
    in spawned processes: the same kept rows, clusters, rejects and edges as the single scan."""
    import pyarrow.parquet as pq

    from dataset_platform.stages.dedup import stage as dedup_stage
    from dataset_platform.storage import files_sql

    rows = sorted(chains, key=lambda r: r["id"])
    files = []
    for k in range(3):  # (parts of the input layer)
        files.append(str(tmp_path / f"part-{k}.parquet"))
        pq.write_table(pa.Table.from_pylist(rows[k::3]), files[-1])  # (not in id order across files)
    seen: list = []

    def run(fn, items):
        seen.extend(items)
        return _spawned(fn, items)

    outs = []
    for tasks, name in ((None, "one"), (Tasks(memory_bytes=10**9, threads=1, min_tasks=2, run=run, where="spawned"),
                                        "tasks")):
        con = memory_connection()
        dedup_stage.run_dedup(con, files_sql([Path(f) for f in files]), tasks=tasks,
                              index=MinHashIndex(tmp_path / name / "index"), files=files)
        outs.append([con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                     for t in ("kept", "clusters", "rejected", "_index_edges_out", "_meta")])
    assert outs[0] == outs[1] and len(outs[0][0]) > 300
    assert sorted(t.file for t in seen if isinstance(t, dedup_stage.ScanTask)) == sorted(files)


def test_on_a_cluster_the_texts_to_sign_are_read_by_a_task_per_input_file(tmp_path, chains):
    """The signing on a cluster: each input file's rows to sign read and signed by a task of its
    own (in spawned processes here), not streamed through the run's process: the same decision,
    and the index part the same bytes, as the signing here."""
    import pyarrow.parquet as pq

    from dataset_platform.stages.dedup import stage as dedup_stage
    from dataset_platform.storage import files_sql

    rows = sorted(chains, key=lambda r: r["id"])
    files = []
    for k in range(3):
        files.append(str(tmp_path / f"part-{k}.parquet"))
        pq.write_table(pa.Table.from_pylist(rows[k::3]), files[-1], row_group_size=50)
    seen: list = []

    def run(fn, items):
        seen.extend(items)
        return _spawned(fn, items)

    outs, parts = [], []
    for tasks, name in ((None, "one"), (Tasks(memory_bytes=10**9, threads=1, min_tasks=2, run=run, where="spawned"),
                                        "tasks")):
        con = memory_connection()
        index = MinHashIndex(tmp_path / name / "index")
        logs: list[str] = []
        # (batches of 40 rows: every file's rows to sign span several of its batches and row groups)
        dedup_stage.run_dedup(con, files_sql([Path(f) for f in files]), tasks=tasks, index=index, files=files,
                              batch_size=40, log=logs.append)
        outs.append([con.sql(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                     for t in ("kept", "clusters", "rejected", "_index_edges_out", "_signed")])
        parts.append({p.name: p.read_bytes() for p in index.path.iterdir() if p.is_file()})
        index.commit(con)
    assert outs[0] == outs[1] and len(outs[0][0]) > 300 and len(outs[0][4]) > 300
    assert parts[0] == parts[1] and any(n.endswith(".parquet") for n in parts[0])  # the part and its arrays
    signing = [t for t in seen if isinstance(t, dedup_stage.SignTask)]
    assert sorted(t.file for t in signing) == sorted(files)
    assert sum(len(t.rows) // 8 for t in signing) == len(outs[1][4])
    assert any("3 task(s), one per input file" in m for m in logs)
    assert not (tmp_path / "tasks" / "index.sign").exists()  # (its scratch files removed)


def test_a_sign_task_refuses_rows_that_are_not_where_the_scan_found_them(tmp_path):
    import pyarrow.parquet as pq

    from dataset_platform.stages.dedup.minhash import MinHashParams
    from dataset_platform.stages.dedup.stage import SignTask, sign_task_of_file

    f = tmp_path / "part.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["one two three four"] * 3}), f)
    task = SignTask(file=str(f), rows=np.array([0, 2], np.int64).tobytes(), ids=pa.array(["a", "c"]),
                    hashes=pa.array(["h1", "h3"]), lang=True, params=MinHashParams(), kernel=False, batch_size=2,
                    out=str(tmp_path / "signed.parquet"))
    assert sign_task_of_file(task) == 2
    signed = pq.read_table(tmp_path / "signed.parquet")
    assert signed.column("id").to_pylist() == ["a", "c"] and signed.column("content_hash").to_pylist() == ["h1", "h3"]
    with pytest.raises(RuntimeError, match="not where the scan found them"):
        sign_task_of_file(SignTask(**{**task.__dict__, "ids": pa.array(["a", "b"])}))
    with pytest.raises(RuntimeError, match="past the end"):
        sign_task_of_file(SignTask(**{**task.__dict__, "rows": np.array([0, 5], np.int64).tobytes()}))


def test_a_tiny_memory_bound_cuts_the_band_keys_into_many_shards(chains):
    n_rows = len(chains) * 14
    assert shards.shard_count(n_rows, 10**9) == 1
    assert shards.shard_count(n_rows, 100 * shards.BAND_ROW_BYTES) == -(-n_rows // 100)
    assert shards.shard_count(0, 1) == 1


def test_a_shard_task_run_twice_writes_the_same_file(tmp_path, chains):
    """A retried task (its worker died) rewrites its output from the same input: same bytes."""
    con = memory_connection()
    con.register("docs", pa.Table.from_pylist(chains))
    index = MinHashIndex(tmp_path / "index")
    run_dedup(con, "docs", index=index)  # signs every document into a new part of the index
    bands = ("SELECT d.doc, (generate_subscripts(p.keys, 1) - 1)::SMALLINT AS band, unnest(p.keys) AS key, "
             "d.part, d.row, TRUE AS new FROM " + index.parts_sql([index.new_part]) + " p JOIN _docs d ON d.id = p.id")
    files = shards.write_band_shards(con, f"SELECT * FROM ({bands})", tmp_path / "shards", 4)
    assert len(files) == 4
    task = shards.ShardTask(shard=0, bands=str(files[0]), out=str(tmp_path / "e0.parquet"), index=str(index.path),
                            permutations=14 * 8, threshold=0.7)
    first = shards.shard_edges(task)
    blob = (tmp_path / "e0.parquet").read_bytes()
    assert shards.shard_edges(task) == first and (tmp_path / "e0.parquet").read_bytes() == blob
    assert first.candidates >= first.verified > 0
    # every bucket is in one shard: the shards' band rows add up to all of them, none twice
    per_shard = [con.sql(f"SELECT count(*) FROM read_parquet('{f}')").fetchall()[0][0] for f in files]
    assert sum(per_shard) == con.sql(f"SELECT count(*) FROM ({bands})").fetchall()[0][0]
    split = con.sql("SELECT count(*) FROM (SELECT band, key FROM read_parquet("
                    f"[{', '.join(repr(str(f)) for f in files)}], filename = true) GROUP BY band, key "
                    "HAVING count(DISTINCT filename) > 1)").fetchall()[0][0]
    assert split == 0


def test_a_refresh_through_the_full_pass_reuses_the_index_in_shards(tmp_path, chains):
    """Half the documents first, then all of them in 5 shards (half are new: the full pass, with
    the old documents' edges from the index): the same decision as one run over everything."""
    _, whole, _ = _run(chains, Tasks(memory_bytes=10**9, threads=2))
    first = memory_connection()
    first.register("docs", pa.Table.from_pylist(chains[: len(chains) // 2]))
    index = MinHashIndex(tmp_path / "index")
    run_dedup(first, "docs", index=index)
    index.commit(first)
    logs: list[str] = []
    _, again, _ = _run(chains, Tasks(memory_bytes=10**9, threads=1, min_tasks=5),
                       index=MinHashIndex(tmp_path / "index"), log=logs.append)
    verified = [m for m in logs if "candidate pairs verified (estimated" in m][0]
    assert "in 5 shards" in verified and "verified pairs reused from the index" in verified
    assert again == whole


# ------------------------------------------------------------------ exact duplicates in shards


def _exact_input(con: duckdb.DuckDBPyConnection, n: int, seed: int) -> None:
    """``_meta`` (pos, id, content_hash, _url_key, ...) with many repeated texts and URLs, a few
    texts without a hash, and ``_index_docs`` saying which documents were kept before."""
    from dataset_platform.stages.dedup.index import EMPTY_TABLES

    rng = random.Random(seed)
    rows = []
    for pos in range(n):
        doc = f"{rng.getrandbits(64):016x}"
        text = None if rng.random() < 0.01 else f"h{rng.randrange(n // 3):06d}"  # ~3 documents a text
        url = f"https://s{rng.randrange(4)}.example.org/{rng.randrange(n // 2)}" if rng.random() < 0.9 else None
        rows.append((pos, doc, "src", url, text, url or doc))
    con.register("_rows", pa.table(dict(zip(["pos", "id", "source", "url", "content_hash", "_url_key"],
                                            map(list, zip(*rows)), strict=True))))
    con.sql("CREATE TABLE _meta AS SELECT * FROM _rows ORDER BY pos")
    con.unregister("_rows")
    for table, cols in EMPTY_TABLES.items():
        con.sql(f"CREATE OR REPLACE TABLE {table} ({cols})")
    kept = [(r[1], r[4], 0, i, rng.random() < 0.5) for i, r in enumerate(rows) if rng.random() < 0.3]
    con.executemany("INSERT INTO _index_docs VALUES (?, ?, ?, ?, ?)", kept)


@pytest.mark.parametrize("min_tasks", [1, 3, 8])
def test_exact_duplicates_ranked_in_shards_equal_the_ranking_over_the_whole_table(tmp_path, min_tasks):
    """The two rankings of exact dedup (by text, then by URL) computed by shard tasks, in two
    rounds with a re-partition in between (``dedup/exact.py``), give every document the keeper,
    ranks and duplicate kind the single query over the whole table gives, whatever the shards."""
    from dataset_platform.stages.dedup import exact
    from dataset_platform.stages.dedup.stage import RANKED_SQL

    con = duckdb.connect()
    _exact_input(con, 3000, seed=min_tasks)
    con.sql(RANKED_SQL.format(table="whole", meta="_meta"))
    ran: list = []

    def run(fn, items):
        ran.extend(items)
        return map(fn, items)

    tasks = Tasks(memory_bytes=10**9, threads=1, run=run, min_tasks=min_tasks, where="test")
    shards_n = exact.rank_in_shards(con, "_meta", "sharded", tmp_path / "exact", tasks)
    assert shards_n == min_tasks
    assert {t.round for t in ran} == {1, 2} and len(ran) == 2 * shards_n
    assert con.sql("SELECT * FROM sharded LIMIT 0").columns == con.sql("SELECT * FROM whole LIMIT 0").columns
    whole = con.sql("SELECT * FROM whole ORDER BY pos").fetchall()
    assert con.sql("SELECT * FROM sharded").fetchall() == whole  # (in pos order)
    dup_by = {r[-1] for r in whole}
    assert dup_by == {None, "content", "url"}  # both kinds of duplicate were there
    assert not (tmp_path / "exact").exists()  # the shard files are gone


def test_exact_shards_are_cut_by_the_task_memory():
    from dataset_platform.stages.dedup import exact

    per_task = 10**9 // exact.EXACT_ROW_BYTES  # rows a 1 GB task holds
    assert exact.shard_count(per_task, 10**9) == 1 and exact.shard_count(per_task + 1, 10**9) == 2
    assert exact.shard_count(10, 10**9, min_tasks=4) == 4  # at least a task per CPU of the cluster
    assert exact.shard_count(10**6, 1) == exact.shard_count(10**6, shards.MIN_TASK_MEMORY)  # (a floor)
