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

Nothing here imports Dagster.
"""

from __future__ import annotations

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


def connected_components(con: duckdb.DuckDBPyConnection, edges_sql: str, out: str,
                         in_memory_edges: int = IN_MEMORY_EDGES) -> int:
    """Create table ``out`` (node, comp) with every node of the edges ``edges_sql`` (columns a, b:
    integers) and the smallest node of its component; returns the number of rounds (0: computed
    in memory, at most ``in_memory_edges`` edges)."""
    if con.sql(f"SELECT count(*) FROM ({edges_sql})").fetchall()[0][0] <= in_memory_edges:
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
