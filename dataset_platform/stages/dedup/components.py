"""Connected components of an edge table: in memory when small, else in rounds of DuckDB SQL.

The clusters of near-duplicates are the connected components of the verified edges. Up to
:data:`IN_MEMORY_EDGES` edges they are computed in memory (scipy); beyond, rather than one process
holding every edge, they are computed where the edges are, in DuckDB, whose joins and aggregates
spill to disk past its memory limit: the memory of this step is then the connection's
``memory_limit``, whatever the number of edges. Both give the same labels.

Min-label propagation with hooking and pointer jumping: every node starts with the smallest of
itself and its neighbours; each round a node takes the smallest label among its neighbours'
(propagation), hands it to the node its label names (hooking, so that a whole tree moves at once),
and then takes its label's label (pointer jumping, halving the paths). Labels only decrease and are
always a node of the same component; when a round changes nothing every edge joins equal labels,
so each component carries one label, its smallest node. The result does not depend on the order
of rows or threads. Rounds: a few for the clusters dedup meets (a bucket is a star); the tests
include a long path and a random graph checked against scipy.

**In shard tasks** (on a cluster, once the edges are more than one task holds: ``tasks`` and
``folder`` given, :func:`components_in_shards`): the same rounds, each cut into four waves of tasks
over files partitioned by node (``node % shards``), so that no task holds more than its shard of
the edges and labels: (1) the shard's new labels (the least of what wave 4 sent it) and, for each
edge whose far end ``v`` is in the shard, ``v``'s label sent to the near end; (2) per node the
least label received, the node's new label and the hook (its old label's node receives it); (3)
per node the least of those (``H``), and a request to the node its label names; (4) that node's
``H`` sent back (pointer jumping). A round that changes no label ends it. The labels are those of
the rounds in one process, round by round, so the components are the same (a test compares them
with scipy's).

Nothing here imports Dagster or Ray.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

#: up to this many edges the components are computed in this process's memory (scipy over the
#: edges as arrays: about 40 bytes an edge, 0.8 GB at the bound), with the same labels; beyond
#: it, in DuckDB rounds that spill. At 1M documents (an edge per document and key) the whole
#: split step took 5.5 s in memory, 7.6-9.5 s in rounds (bench/split.py, M2; scipy before this
#: module: 4.7-5.1 s)
IN_MEMORY_EDGES = 20_000_000
#: a bound on the rounds: far above what any graph needs (the label of a node halves its distance
#: to its component's smallest node every round or two); reaching it is a bug, not a big input
MAX_ROUNDS = 200


#: bytes an edge takes in a shard task's DuckDB (both directions of it, the labels of its ends and
#: what a wave sends); a shard holds at most ``memory / EDGE_BYTES`` edges. ``bench/split.py
#: --components``: the split graph of 1M documents (2M edges) in one shard, wave 2 (the heaviest)
#: peaked 195-208 bytes an edge above the baseline process (two runs)
EDGE_BYTES = 256


def connected_components(con: duckdb.DuckDBPyConnection, edges_sql: str, out: str,
                         in_memory_edges: int = IN_MEMORY_EDGES, *, tasks=None, folder: Path | None = None,
                         log=None) -> int:
    """Create table ``out`` (node, comp) with every node of the edges ``edges_sql`` (columns a, b:
    integers) and the smallest node of its component; returns the number of rounds (0: computed
    in memory, at most ``in_memory_edges`` edges). With ``tasks`` (``stages.base.Tasks``) of a
    cluster and a ``folder`` every worker reaches, edges beyond one task's bound are processed in
    shard tasks (:func:`components_in_shards`)."""
    edges = con.sql(f"SELECT count(*) FROM ({edges_sql})").fetchall()[0][0]
    if (tasks is not None and tasks.where != "local" and folder is not None
            and shard_count(edges, tasks.memory_bytes) > 1):
        return components_in_shards(con, edges_sql, out, folder, tasks, log)
    if edges <= in_memory_edges:
        _in_memory(con, edges_sql, out)
        return 0
    con.sql(f"CREATE OR REPLACE TEMP TABLE _cc_e AS SELECT a AS u, b AS v FROM ({edges_sql}) WHERE a <> b "
            "UNION SELECT b, a FROM (" + edges_sql + ") WHERE a <> b")
    con.sql("CREATE OR REPLACE TEMP TABLE _cc_l AS SELECT u AS node, least(u, min(v)) AS label FROM _cc_e GROUP BY u")
    rounds = 0
    while True:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise RuntimeError(f"connected components did not settle in {MAX_ROUNDS} rounds")
        con.sql(
            """
            CREATE OR REPLACE TEMP TABLE _cc_h AS
            WITH n AS (SELECT e.u AS node, min(l.label) AS m FROM _cc_e e JOIN _cc_l l ON l.node = e.v GROUP BY e.u)
            SELECT node, min(x) AS label FROM (
              SELECT l.node, least(l.label, n.m) AS x FROM _cc_l l JOIN n USING (node)
              UNION ALL SELECT l.label, n.m FROM _cc_l l JOIN n USING (node) WHERE n.m < l.label
            ) GROUP BY node
            """
        )
        con.sql(
            """
            CREATE OR REPLACE TEMP TABLE _cc_j AS
            SELECT h.node, least(h.label, coalesce(p.label, h.label)) AS label
            FROM _cc_h h LEFT JOIN _cc_h p ON p.node = h.label
            """
        )
        changed = con.sql("SELECT count(*) FROM _cc_j j JOIN _cc_l l USING (node) "
                          "WHERE j.label <> l.label").fetchall()[0][0]
        con.sql("DROP TABLE _cc_l")
        con.sql("ALTER TABLE _cc_j RENAME TO _cc_l")
        if changed == 0:
            break
    con.sql(f"CREATE OR REPLACE TABLE {out} AS SELECT node, label AS comp FROM _cc_l ORDER BY node")
    con.sql("DROP TABLE _cc_l")
    con.sql("DROP TABLE IF EXISTS _cc_h")
    con.sql("DROP TABLE _cc_e")
    return rounds


def _in_memory(con: duckdb.DuckDBPyConnection, edges_sql: str, out: str) -> None:
    """:func:`connected_components` with scipy, for a graph whose edges fit in memory."""
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    e = con.sql(f"SELECT a, b FROM ({edges_sql}) WHERE a <> b").fetchnumpy()
    a, b = np.asarray(e["a"], np.int64), np.asarray(e["b"], np.int64)
    nodes = np.sort(np.concatenate([a, b]), kind="stable")  # (numpy's unique hashes: slower here)
    nodes = nodes[np.r_[True, nodes[1:] != nodes[:-1]]] if nodes.size else nodes
    n = nodes.size
    if n == 0:
        con.sql(f"CREATE OR REPLACE TABLE {out} (node BIGINT, comp BIGINT)")
        return
    ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    _, label = scipy_components(coo_matrix((np.ones(a.size, np.int8), (ia, ib)), shape=(n, n)), directed=False)
    # the first index of each label is its smallest node (nodes ascend; a stable sort keeps the
    # indices of a label in order)
    order = np.argsort(label, kind="stable")
    grouped = label[order]
    first = order[np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])]
    con.register("_cc_mem", pa.table({"node": pa.array(nodes), "comp": pa.array(nodes[first[label]])}))
    con.sql(f"CREATE OR REPLACE TABLE {out} AS SELECT node, comp FROM _cc_mem ORDER BY node")
    con.unregister("_cc_mem")


# -- in shard tasks

def shard_count(edges: int, memory_bytes: int, min_tasks: int = 1) -> int:
    """Shards for ``edges`` edges so that one shard fits a task's memory (at least ``min_tasks``)."""
    from dataset_platform.stages.dedup.shards import cut

    return cut(edges, memory_bytes, EDGE_BYTES, min_tasks)


@dataclass(frozen=True)
class WaveTask:
    """Wave ``wave`` (1-4, or 0: the first labels) of a round, for shard ``shard`` of ``shards``:
    reads the files of ``folder`` the wave reads, writes the shard's own."""

    wave: int
    shard: int
    shards: int
    folder: str
    memory_limit: str = "1GB"
    threads: int = 1


def _part(col: str, shards: int) -> str:
    return f"(({col} % {shards}) + {shards}) % {shards}"


def wave_task(task: WaveTask) -> int:
    """One task of a wave (see the module docstring); wave 1 returns the labels of its shard that
    changed in the round before (the first round: every label), the others 0."""
    from dataset_platform.stages.dedup.shards import task_connection
    from dataset_platform.storage import sql_str

    f, s, n = Path(task.folder), task.shard, task.shards
    con = task_connection(task.memory_limit, task.threads, str(f / f"tmp-{s}"))

    def read(name: str, cols: str) -> str:  # what every task of the wave before sent to this shard
        files = sorted(f.glob(f"{name}/from=*/to={s}/*.parquet"))
        if not files:
            return f"(SELECT {cols} WHERE false)"
        return "read_parquet([" + ", ".join(sql_str(x) for x in files) + "])"

    def send(name: str, query: str, to: str) -> None:  # rows to the shards of column ``to``
        out = f / name / f"from={s}"
        shutil.rmtree(out, ignore_errors=True)  # (a task run again rewrites its files whole)
        out.parent.mkdir(parents=True, exist_ok=True)
        con.sql(f"COPY (SELECT *, {_part(to, n)}::INTEGER AS \"to\" FROM ({query})) TO {sql_str(out)} "
                "(FORMAT parquet, PARTITION_BY (\"to\"), COMPRESSION zstd)")

    def keep(name: str, query: str) -> None:  # the shard's own file
        tmp = f / f"{name}-{s}.parquet.tmp"
        con.sql(f"COPY ({query}) TO {sql_str(tmp)} (FORMAT parquet, COMPRESSION zstd)")
        tmp.replace(f / f"{name}-{s}.parquet")

    mine = sorted((f / "edges" / f"shard={s}").glob("*.parquet"))  # (none: a shard without nodes)
    edges = ("read_parquet([" + ", ".join(sql_str(x) for x in mine) + "])" if mine
             else "(SELECT NULL::BIGINT AS u, NULL::BIGINT AS v WHERE false)")
    labels = sql_str(f / f"labels-{s}.parquet")
    try:
        changed = 0
        if task.wave == 0:  # the first labels: the least of the node and its neighbours
            keep("labels", f"SELECT v AS node, least(v, min(u)) AS label FROM {edges} GROUP BY v")
        elif task.wave == 1:
            got = read("jumped", "NULL::BIGINT AS node, NULL::BIGINT AS label")
            if got.startswith("read_parquet"):
                con.sql(f"CREATE TABLE j AS SELECT node, min(label) AS label FROM {got} GROUP BY node")
                changed = con.sql(f"SELECT count(*) FROM j JOIN read_parquet({labels}) l USING (node) "
                                  "WHERE j.label <> l.label").fetchall()[0][0]
                keep("labels", "SELECT * FROM j")
            send("near", f"SELECT e.u AS node, min(l.label) AS m FROM {edges} e "
                         f"JOIN read_parquet({labels}) l ON l.node = e.v GROUP BY e.u", "node")
        elif task.wave == 2:
            got = read("near", "NULL::BIGINT AS node, NULL::BIGINT AS m, NULL::INTEGER AS \"to\"")
            send("hooked", f"""
                WITH n AS (SELECT node, min(m) AS m FROM {got} GROUP BY node),
                l AS (SELECT * FROM read_parquet({labels}))
                SELECT l.node, least(l.label, n.m) AS label FROM l JOIN n USING (node)
                UNION ALL SELECT l.label, n.m FROM l JOIN n USING (node) WHERE n.m < l.label
            """, "node")
        elif task.wave == 3:
            got = read("hooked", "NULL::BIGINT AS node, NULL::BIGINT AS label, NULL::INTEGER AS \"to\"")
            keep("hooks", f"SELECT node, min(label) AS label FROM {got} GROUP BY node")
            send("asked", f"SELECT node, label FROM read_parquet({sql_str(f / f'hooks-{s}.parquet')})", "label")
        else:  # 4: pointer jumping, answered where the label's node is
            got = read("asked", "NULL::BIGINT AS node, NULL::BIGINT AS label, NULL::INTEGER AS \"to\"")
            send("jumped", f"SELECT a.node, least(a.label, coalesce(h.label, a.label)) AS label FROM {got} a "
                           f"LEFT JOIN read_parquet({sql_str(f / f'hooks-{s}.parquet')}) h ON h.node = a.label", "node")
        return int(changed)
    finally:
        con.close()


def components_in_shards(con: duckdb.DuckDBPyConnection, edges_sql: str, out: str, folder: Path, tasks,
                         log=None) -> int:
    """:func:`connected_components` with its rounds as waves of shard tasks run with ``tasks``
    (see the module docstring), on files in ``folder`` (removed after). Returns the rounds."""
    from dataset_platform.storage import scratch, sql_str, task_memory_limit

    edges = con.sql(f"SELECT count(*) FROM ({edges_sql})").fetchall()[0][0]
    shards = shard_count(edges, tasks.memory_bytes, tasks.min_tasks)
    memory = task_memory_limit(tasks.memory_bytes)
    with scratch(folder):
        # both directions of every edge, in the shard of its far end ``v``
        con.sql(f"""
            COPY (SELECT u, v, {_part('v', shards)}::INTEGER AS shard FROM (
                    SELECT a::BIGINT AS u, b::BIGINT AS v FROM ({edges_sql}) WHERE a <> b
                    UNION SELECT b::BIGINT, a::BIGINT FROM ({edges_sql}) WHERE a <> b))
            TO {sql_str(folder / 'edges')} (FORMAT parquet, PARTITION_BY (shard), COMPRESSION zstd)
        """)

        def wave(w: int) -> int:
            return sum(tasks.run(wave_task, [WaveTask(w, s, shards, str(folder), memory, tasks.threads)
                                             for s in range(shards)]))

        wave(0)
        rounds = 0
        while True:
            changed = wave(1)
            if rounds and changed == 0:
                break
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise RuntimeError(f"connected components did not settle in {MAX_ROUNDS} rounds")
            for w in (2, 3, 4):
                wave(w)
        files = ", ".join(sql_str(folder / f"labels-{s}.parquet") for s in range(shards))
        con.sql(f"CREATE OR REPLACE TABLE {out} AS SELECT node, label AS comp FROM read_parquet([{files}]) ORDER BY node")
        if log:
            log(f"components: {edges} edges in {shards} shard(s), {rounds} round(s) of 4 waves of tasks ({tasks.where})")
        return rounds
