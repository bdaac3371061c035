"""Connected components of an edge table, in rounds of DuckDB SQL: memory bounded by DuckDB's.

The clusters of near-duplicates are the connected components of the verified edges. Rather than
one process holding every edge (a sparse matrix for scipy), the components are computed where the
edges are, in DuckDB, whose joins and aggregates spill to disk past its memory limit: the memory
of this step is the connection's ``memory_limit``, whatever the number of edges.

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

#: a bound on the rounds: far above what any graph needs (the label of a node halves its distance
#: to its component's smallest node every round or two); reaching it is a bug, not a big input
MAX_ROUNDS = 200


def connected_components(con: duckdb.DuckDBPyConnection, edges_sql: str, out: str) -> int:
    """Create table ``out`` (node, comp) with every node of the edges ``edges_sql`` (columns a, b:
    integers) and the smallest node of its component; returns the number of rounds."""
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
