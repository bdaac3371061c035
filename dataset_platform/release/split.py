"""Leak-free, stable, stratified train/validation/test assignment.

Leaks. Documents that share a near-duplicate cluster, a URL or (when configured) a domain would
let a model see in training what it is tested on, so they form one *group* and a group lives in
one split. Keys link transitively (document A shares a cluster with B, B a URL with C: one group),
so groups are the connected components of the bipartite graph document <-> key over
integer-coded edges (``stages/dedup/components.py``: in memory up to its bound, beyond in rounds of
DuckDB SQL that spill). A group's ``group_key`` is the
smallest ``md5(salt:key)`` over its members' keys: stable across runs, machines and DuckDB
versions (md5 over UTF-8 bytes is a defined function; DuckDB's ``hash()`` is not).

Stability (the hard requirement). A release is published, people train on it: a document that
was assigned before keeps its split, always (``previous_sql``; ``split_assignments`` is what the
caller persists and passes back, and it keeps documents that left, so a document that returns
gets its old split back). New documents of a group with previously assigned members join them;
when a new document bridges groups that were assigned to different splits, the old members still
keep theirs, the new ones join the split holding most of the old members (ties by split order),
and the group is counted in ``straddling_groups``: the one leak the stability rule forces.

Balance. New groups are allocated per stratum (the ``stratify_by`` value of the group's member
with the smallest ``md5(salt:id)``; one stratum without ``stratify_by``) so that the stratum's
documents, old and new together, approach the configured ratios: the desired new documents per
split are ``max(0, ratio * total - placed)`` (placed: documents whose split is already decided,
counted by their own value), rescaled to the new documents. The stratum's new groups in
``md5(salt:group_key)`` order fill train, then validation, then test by cumulative document count
(a group goes where its middle falls): a hash-ordered quota split, exact up to group granularity,
that depends on the salt and the keys, never on input order. Groups whose members carry several
values (a URL shared across topics) would skew that, since their stratum speaks for one value
only: they are allocated first, at the plain ratios, and then count as placed when the
single-valued groups are allocated, whose quotas make up for them (on 5 000 synthetic documents
with ~8% of them in such groups this brings the largest share deviation from 0.015-0.06 down to
0.002-0.006).
Everything is set-based SQL; nothing loops per document.

By difference. A refresh that knows which documents are unchanged since the last run
(``last_run_sql``: every document of that run with its group key, and whether it is still here
with the same keys and stratify value) recomputes groups only where something moved: the groups
of that run holding a document that changed, left or has no previous split, or sharing a key
with a new or changed document, together with the new and changed documents (the *region*). No
key links the region to the rest (a document sharing a key with a region document is in the
region), so the rest keeps its groups, group keys and splits, and the region's components are
those of the whole graph. New groups are all in the region; the quotas count the rest's
documents per stratify value and split as placed. The outputs (splits, group keys, statistics)
are those of the whole computation (``tests/test_split.py`` runs random refreshes both ways);
what stays linear is a join of the documents' ids and keys against the last run, and the sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dataset_platform.config import SplitSettings
from dataset_platform.contracts.schema import SPLITS
from dataset_platform.storage import sql_str

# 60 bits of md5 as an integer, scaled to [0, 1)
_BUCKET = "CAST(('0x' || left(md5({salt} || ':' || {key}), 15)) AS UBIGINT) / 1152921504606846976.0"
# host of a URL: after an optional scheme and user info, up to the port, path, query or fragment
# (a bracketed IPv6 literal kept whole)
_HOST_RE = r"^(?:(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)?(?:[^@/?#]*@)?(\[[^\]]*\]|[^/?#:]*)"
_TABLES = ("_split_prev", "_split_slim", "_split_edges", "_split_keys", "_split_comp", "_split_members",
           "_split_groups", "_split_quota", "_split_new", "_split_assign", "_split_cur", "_split_last",
           "_split_dirty", "_split_outside", "_split_outside_counts", "_split_region")


def bucket_sql(key_sql: str, salt: str) -> str:
    """SQL for a uniform value in [0, 1) derived from ``key_sql``."""
    return _BUCKET.format(salt=sql_str(salt), key=key_sql)


def stable_hash_sql(key_sql: str, salt: str) -> str:
    """SQL for ``md5(salt:key)`` (hex): the stable hash every ordering of this module uses."""
    return f"md5({sql_str(salt)} || ':' || {key_sql})"


def domain_sql(url_sql: str) -> str:
    """SQL for a URL's domain: the lower-cased host without port and leading ``www.`` (NULL when
    there is none)."""
    host = f"lower(regexp_extract({url_sql}, {sql_str(_HOST_RE)}, 1))"
    return f"nullif(regexp_replace({host}, '^www\\.', ''), '')"


@dataclass
class SplitStats:
    """What :func:`assign_splits` did (deterministic values only: fit for a card or metadata)."""

    #: documents per split (every split listed)
    rows: dict[str, int]
    #: groups (connected components over the configured keys) among the documents
    groups: int
    #: groups with members in more than one split (0 unless a new document bridged old groups)
    straddling_groups: int
    #: documents whose split came from ``previous_sql``
    kept_from_previous: int
    #: documents assigned now
    new: int
    #: largest |share of a value in a split - its share in the whole| over splits with documents
    #: and values of ``stratify_by`` (None without stratification)
    max_share_deviation: float | None
    #: [split, value, docs, share of the split] for every split with documents x value (split
    #: order, then value); empty without stratification
    shares: list[list] = field(default_factory=list)
    stratify_by: str | None = None
    tolerance: float | None = None
    #: documents whose groups were computed: all of them, or by difference the region's
    recomputed: int | None = None

    @property
    def balanced(self) -> bool:
        """True when unstratified, or every share is within ``tolerance`` of the whole's."""
        return self.max_share_deviation is None or self.max_share_deviation <= (self.tolerance or 0.0) + 1e-12


def assign_splits(
    con: duckdb.DuckDBPyConnection,
    docs_sql: str,
    settings: SplitSettings,
    *,
    previous_sql: str | None = None,
    last_run_sql: str | None = None,
    carry: bool = True,
    tasks=None,
    shard_folder: Path | None = None,
    log=None,
) -> SplitStats:
    """Assign every document of ``docs_sql`` to train, validation or test.

    ``docs_sql``: FROM-able with unique ``id``, ``url`` and, when ``group_by`` has ``cluster``,
    ``cluster_id`` (preferred) or ``content_hash`` (a keeper's content hash is its cluster id);
    plus the ``stratify_by`` column when set. Other columns are carried through. NULL keys link
    nothing (such a document is alone unless another key links it).
    ``previous_sql``: FROM-able (id, split[, group_key]) of earlier assignments, or None. It is
    read before anything is replaced, so ``"split_assignments"`` of an earlier call works.
    ``last_run_sql``: FROM-able (id, group_key, clean) of every document of the run that made
    ``previous_sql``, with the group key that run gave it and ``clean`` true when it is in
    ``docs_sql`` with the same keys and stratify value; with ``previous_sql``, groups are
    recomputed by difference (see the module docstring). Only valid with the same ``salt`` and
    ``group_by`` as that run.

    ``carry=False``: ``split_docs`` holds id, split and group_key only, in no particular order
    (what a caller that joins it by id needs; no join with the input, no sort).

    ``tasks`` (``stages.base.Tasks``) and ``shard_folder``: on a cluster (``tasks.where`` not
    ``local``), once the documents exceed what one task holds, the allocation runs as shard tasks
    there (``release/split_shards.py``), with the same result.

    Leaves ``split_docs`` (input columns + ``split`` + ``group_key``, ORDER BY id) and
    ``split_assignments`` (id, split, group_key: this run's documents plus the previous
    assignments of documents absent now, ORDER BY id) on ``con``.
    """
    cols = list(con.sql(f"SELECT * FROM {docs_sql} LIMIT 0").columns)
    cluster_col = _check_input(cols, settings)
    _load_previous(con, previous_sql)
    region_sql = docs_sql
    if last_run_sql is not None and previous_sql is not None:
        _region(con, docs_sql, settings, cluster_col, last_run_sql)
        region_sql = f"(SELECT s.* FROM {docs_sql} s SEMI JOIN _split_region r ON r.id = s.id::VARCHAR)"
    else:
        con.sql("CREATE OR REPLACE TABLE _split_outside (id VARCHAR, split VARCHAR, group_key VARCHAR, value VARCHAR, "
                "prev_split VARCHAR)")
        con.sql("CREATE OR REPLACE TABLE _split_outside_counts (stratum VARCHAR, split VARCHAR, n BIGINT)")
    _slim(con, region_sql, settings, cluster_col)
    _components(con, settings, tasks, shard_folder, log)
    from dataset_platform.release import split_shards

    n = con.sql("SELECT count(*) FROM _split_members").fetchall()[0][0]
    if (tasks is not None and tasks.where != "local" and shard_folder is not None
            and split_shards.shard_count(n, tasks.memory_bytes) > 1):
        split_shards.allocate_in_shards(con, settings, shard_folder, tasks, log)
    else:
        _allocate(con, settings)
    recomputed = con.sql("SELECT count(*) FROM _split_assign").fetchall()[0][0]
    con.sql("INSERT INTO _split_assign SELECT id, NULL, split, group_key, prev_split, value FROM _split_outside")
    carried = [c for c in cols if c not in ("split", "group_key")]
    select = ", ".join(f's."{c}"' for c in carried)
    if carry:
        con.sql(
            f"""
            CREATE OR REPLACE TABLE split_docs AS
            SELECT {select}, a.split, a.group_key
            FROM {docs_sql} s JOIN _split_assign a ON a.id = s.id::VARCHAR
            ORDER BY s.id
            """
        )
    else:
        con.sql("CREATE OR REPLACE TABLE split_docs AS SELECT id, split, group_key FROM _split_assign")
    con.sql(
        """
        CREATE OR REPLACE TABLE split_assignments AS
        SELECT id, split, group_key FROM _split_assign
        UNION ALL
        SELECT p.id, p.split, p.group_key FROM _split_prev p ANTI JOIN _split_assign a USING (id)
        ORDER BY id
        """
    )
    stats = _stats(con, settings)
    stats.recomputed = int(recomputed)
    for t in _TABLES:
        con.sql(f"DROP TABLE IF EXISTS {t}")
    return stats


# -- inputs


def _check_input(cols: list[str], settings: SplitSettings) -> str | None:
    """The cluster column to use (None when clusters are not a key); raises on missing columns."""
    missing = [c for c in ("id", "url") if c not in cols]
    if settings.stratify_by and settings.stratify_by not in cols:
        missing.append(settings.stratify_by)
    if missing:
        raise ValueError(f"split input lacks column(s) {missing} (has: {', '.join(sorted(cols))})")
    if "cluster" not in settings.group_by:
        return None
    for c in ("cluster_id", "content_hash"):
        if c in cols:
            return c
    raise ValueError("split group_by has 'cluster' but the input has neither cluster_id nor content_hash "
                     f"(has: {', '.join(sorted(cols))})")


def _load_previous(con: duckdb.DuckDBPyConnection, previous_sql: str | None) -> None:
    """``_split_prev`` (id, split, group_key): one row per id; raises on contradictions."""
    if previous_sql is None:
        con.sql("CREATE OR REPLACE TABLE _split_prev (id VARCHAR, split VARCHAR, group_key VARCHAR)")
        return
    pcols = con.sql(f"SELECT * FROM {previous_sql} LIMIT 0").columns
    gk = "group_key::VARCHAR" if "group_key" in pcols else "NULL::VARCHAR"
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _split_prev AS
        SELECT id, min(split) AS split, min(group_key) AS group_key, min(split) <> max(split) AS contradictory
        FROM (SELECT id::VARCHAR AS id, split::VARCHAR AS split, {gk} AS group_key FROM {previous_sql})
        GROUP BY id
        """
    )
    bad = con.sql(
        f"SELECT id, split FROM _split_prev WHERE contradictory OR split NOT IN {tuple(SPLITS)!r} OR split IS NULL "
        "ORDER BY id LIMIT 3"
    ).fetchall()
    if bad:
        raise ValueError(f"previous split assignments are contradictory or invalid (e.g. {bad}): "
                         "each id needs exactly one of train/validation/test")
    con.sql("ALTER TABLE _split_prev DROP COLUMN contradictory")


def _region(con: duckdb.DuckDBPyConnection, docs_sql: str, settings: SplitSettings, cluster_col: str | None,
            last_run_sql: str) -> None:
    """By difference: ``_split_region`` (ids whose groups are recomputed) and ``_split_outside``
    (id, split, group_key, value, prev_split: the others, which keep what the last run gave them),
    with ``_split_outside_counts`` (its documents per stratify value and split)."""
    cluster = f'"{cluster_col}"::VARCHAR' if cluster_col else "NULL::VARCHAR"
    value = f'"{settings.stratify_by}"::VARCHAR' if settings.stratify_by else "NULL::VARCHAR"
    con.sql(f"""
        CREATE OR REPLACE TABLE _split_last AS
        SELECT id::VARCHAR AS id, group_key::VARCHAR AS group_key, coalesce(clean, false) AS clean FROM {last_run_sql}
    """)
    con.sql(f"""
        CREATE OR REPLACE TABLE _split_cur AS
        SELECT c.id, c.cluster, c.url, c.value, p.split AS prev_split,
               CASE WHEN l.clean THEN l.group_key END AS last_group
        FROM (SELECT id::VARCHAR AS id, {cluster} AS cluster, url::VARCHAR AS url, {value} AS value FROM {docs_sql}) c
        LEFT JOIN _split_last l USING (id) LEFT JOIN _split_prev p USING (id)
    """)
    # groups of the last run that cannot stay as they were: a member changed or left, a member has
    # no previous split, or a member shares a key with a new or changed document
    dirty = ["SELECT group_key FROM _split_last WHERE NOT clean",
             "SELECT last_group FROM _split_cur WHERE last_group IS NOT NULL AND prev_split IS NULL"]
    keys = []
    if "cluster" in settings.group_by:
        keys.append("cluster")
    if "url" in settings.group_by:
        keys.append("url")
    for k in keys:
        dirty.append(f"SELECT c.last_group FROM _split_cur c SEMI JOIN (SELECT {k} FROM _split_cur "
                     f"WHERE last_group IS NULL AND {k} IS NOT NULL AND {k} <> '') n ON n.{k} = c.{k} "
                     "WHERE c.last_group IS NOT NULL")
    if "domain" in settings.group_by:
        d = domain_sql("url")
        dirty.append(f"SELECT c.last_group FROM (SELECT last_group, {d} AS d FROM _split_cur "
                     "WHERE last_group IS NOT NULL) c "
                     f"SEMI JOIN (SELECT {d} AS d FROM _split_cur WHERE last_group IS NULL) n ON n.d = c.d")
    con.sql("CREATE OR REPLACE TABLE _split_dirty AS SELECT DISTINCT group_key FROM (" + " UNION ALL ".join(
        f"SELECT * FROM ({q})" for q in dirty) + ") t(group_key) WHERE group_key IS NOT NULL")
    con.sql("""
        CREATE OR REPLACE TABLE _split_outside AS
        SELECT c.id, c.prev_split AS split, c.last_group AS group_key, c.value, c.prev_split
        FROM _split_cur c ANTI JOIN _split_dirty d ON d.group_key = c.last_group
        WHERE c.last_group IS NOT NULL
    """)
    con.sql("CREATE OR REPLACE TABLE _split_region AS SELECT id FROM _split_cur ANTI JOIN _split_outside USING (id)")
    con.sql("CREATE OR REPLACE TABLE _split_outside_counts AS "
            "SELECT value AS stratum, split, count(*) AS n FROM _split_outside GROUP BY ALL")
    for t in ("_split_cur", "_split_last", "_split_dirty"):  # (memory: the whole-size tables go early)
        con.sql(f"DROP TABLE {t}")


def _slim(con: duckdb.DuckDBPyConnection, docs_sql: str, settings: SplitSettings, cluster_col: str | None) -> None:
    """``_split_slim``: one row per document with an integer ``doc`` (id order), its keys, its
    stratify value, ``md5(salt:id)`` and its previous split."""
    cluster = f'"{cluster_col}"::VARCHAR' if cluster_col else "NULL::VARCHAR"
    value = f'"{settings.stratify_by}"::VARCHAR' if settings.stratify_by else "NULL::VARCHAR"
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _split_slim AS
        SELECT (row_number() OVER (ORDER BY s.id) - 1)::INTEGER AS doc, s.id, s.cluster, s.url, s.value,
               {stable_hash_sql("s.id", settings.salt)} AS id_hash, p.split AS prev_split
        FROM (SELECT id::VARCHAR AS id, {cluster} AS cluster, url::VARCHAR AS url, {value} AS value
              FROM {docs_sql}) s
        LEFT JOIN _split_prev p USING (id)
        """
    )
    n, distinct, nulls = con.sql("SELECT count(*), count(DISTINCT id), count(*) - count(id) FROM _split_slim").fetchall()[0]
    if nulls:
        raise ValueError(f"split input has {nulls} document(s) without an id")
    if n != distinct:
        dup = con.sql("SELECT id FROM _split_slim GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 3").fetchall()
        raise ValueError(f"split input has {n - distinct} repeated ids (e.g. {', '.join(r[0] for r in dup)})")


# -- groups


def _components(con: duckdb.DuckDBPyConnection, settings: SplitSettings, tasks=None, folder: Path | None = None,
                log=None) -> None:
    """``_split_members`` (doc, id, value, id_hash, prev_split, comp, group_key); on a cluster
    (``tasks``), a graph beyond one task's bound in shard tasks, in ``folder``."""
    from dataset_platform.stages.dedup.components import connected_components

    parts = []
    if "cluster" in settings.group_by:
        parts.append("SELECT doc, 'cluster:' || cluster AS key FROM _split_slim WHERE cluster IS NOT NULL AND cluster <> ''")
    if "url" in settings.group_by:
        parts.append("SELECT doc, 'url:' || url AS key FROM _split_slim WHERE url IS NOT NULL AND url <> ''")
    if "domain" in settings.group_by:
        parts.append(f"SELECT doc, 'domain:' || d AS key FROM (SELECT doc, {domain_sql('url')} AS d FROM _split_slim) "
                     "WHERE d IS NOT NULL")
    raw = " UNION ALL ".join(parts) if parts else "SELECT NULL::INTEGER AS doc, NULL::VARCHAR AS key WHERE false"
    con.sql(f"CREATE OR REPLACE TABLE _split_edges AS SELECT DISTINCT doc, key FROM ({raw})")
    # ``k`` only numbers keys as nodes of the graph (unordered, so no sort): component numbers never
    # reach the output, which is derived from group keys (md5) and document ids alone
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _split_keys AS
        SELECT (row_number() OVER () - 1)::INTEGER AS k, key, {stable_hash_sql("key", settings.salt)} AS key_hash
        FROM (SELECT DISTINCT key FROM _split_edges)
        """
    )
    con.sql("CREATE OR REPLACE TABLE _split_edges AS SELECT e.doc, k.k FROM _split_edges e JOIN _split_keys k USING (key)")
    n_docs = con.sql("SELECT count(*) FROM _split_slim").fetchall()[0][0]
    # the components of the graph of documents and keys (keys are nodes after the documents); the
    # label of a component is its smallest node, a document; a document without keys is a
    # component of its own
    connected_components(con, f"SELECT doc AS a, k + {int(n_docs)} AS b FROM _split_edges", "_split_cc",
                         tasks=tasks, folder=folder.with_name(folder.name + ".components") if folder else None, log=log)
    con.sql("CREATE OR REPLACE TABLE _split_comp AS SELECT s.doc, coalesce(c.comp, s.doc)::BIGINT AS comp "
            "FROM _split_slim s LEFT JOIN _split_cc c ON c.node = s.doc")
    con.sql("DROP TABLE _split_cc")
    # group key: the smallest key hash of the component; a document without keys is alone and
    # keyed by its id
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _split_members AS
        WITH gk AS (
          SELECT c.comp, min(k.key_hash) AS group_key
          FROM _split_edges e JOIN _split_comp c USING (doc) JOIN _split_keys k USING (k)
          GROUP BY c.comp
        )
        SELECT s.doc, s.id, s.value, s.id_hash, s.prev_split, c.comp,
               coalesce(gk.group_key, {stable_hash_sql("'id:' || s.id", settings.salt)}) AS group_key
        FROM _split_slim s JOIN _split_comp c USING (doc) LEFT JOIN gk USING (comp)
        """
    )


# -- allocation


# one row per group of ``{members}``: size, old members per split, the split new members join, the
# stratum, and whether its members carry more than one value of ``stratify_by``
GROUPS_SQL = """
    SELECT *,
      CASE WHEN o_train + o_validation + o_test = 0 THEN NULL
           WHEN o_train >= o_validation AND o_train >= o_test THEN 'train'
           WHEN o_validation >= o_test THEN 'validation' ELSE 'test' END AS joined
    FROM (
      SELECT comp, min(group_key) AS group_key, count(*) AS size,
             count(*) FILTER (WHERE prev_split = 'train') AS o_train,
             count(*) FILTER (WHERE prev_split = 'validation') AS o_validation,
             count(*) FILTER (WHERE prev_split = 'test') AS o_test,
             arg_min_null(value, id_hash) AS stratum,
             count(DISTINCT value) > 1 OR count(value) NOT IN (0, count(*)) AS mixed
      FROM {members} GROUP BY comp
    )
"""
# every document's split: kept from before, else the split its group joins, else its new group's
ASSIGN_SQL = """
    SELECT m.id, m.comp, coalesce(m.prev_split, g.joined, n.split) AS split, m.group_key, m.prev_split, m.value
    FROM {members} m JOIN {groups} g USING (comp) LEFT JOIN {new} n USING (comp)
"""


def _allocate(con: duckdb.DuckDBPyConnection, settings: SplitSettings) -> None:
    """``_split_assign`` (id, comp, split, group_key, prev_split, value) for every document."""
    con.sql(f"CREATE OR REPLACE TABLE _split_groups AS {GROUPS_SQL.format(members='_split_members')}")
    con.sql("CREATE OR REPLACE TABLE _split_new (comp BIGINT, split VARCHAR)")
    # mixed new groups first, at the plain ratios; then the single-valued ones, whose quotas
    # make up for everything placed before them (old documents, new members of old groups and
    # the mixed groups, counted by their own value), so each value's total comes out right
    _fill(con, settings, "mixed", count_placed=False)
    _fill(con, settings, "NOT mixed", count_placed=True)
    con.sql("CREATE OR REPLACE TABLE _split_assign AS "
            + ASSIGN_SQL.format(members="_split_members", groups="_split_groups", new="_split_new"))


def quota_sql(settings: SplitSettings, placed: str, new: str) -> str:
    """Per stratum, the new documents to put in train and in validation (``q_train``,
    ``q_validation``; the rest go to test): ``placed`` (stratum, split, n) the documents with a
    split already, ``new`` (stratum, n DOUBLE) the new groups' documents to allocate. The desired
    new documents per split are ``max(0, ratio * total - placed)``, rescaled to the new ones."""
    r = {"train": float(settings.train), "validation": float(settings.validation), "test": float(settings.test)}
    return f"""
        WITH e AS (
          SELECT stratum, coalesce(sum(n) FILTER (WHERE split = 'train'), 0) AS e_train,
                 coalesce(sum(n) FILTER (WHERE split = 'validation'), 0) AS e_validation,
                 coalesce(sum(n) FILTER (WHERE split = 'test'), 0) AS e_test
          FROM ({placed}) GROUP BY stratum
        ), d AS (
          SELECT n.stratum, n.n,
                 greatest(0, {r['train']!r} * t - e_train) AS d_train,
                 greatest(0, {r['validation']!r} * t - e_validation) AS d_validation,
                 greatest(0, {r['test']!r} * t - e_test) AS d_test
          FROM (SELECT n.*, coalesce(e.e_train, 0) AS e_train, coalesce(e.e_validation, 0) AS e_validation,
                       coalesce(e.e_test, 0) AS e_test,
                       n.n + coalesce(e.e_train + e.e_validation + e.e_test, 0) AS t
                FROM ({new}) n LEFT JOIN e ON e.stratum IS NOT DISTINCT FROM n.stratum) n
        )
        SELECT stratum,
               CASE WHEN d_train + d_validation + d_test > 0 THEN n * d_train / (d_train + d_validation + d_test)
                    ELSE n * {r['train']!r} END AS q_train,
               CASE WHEN d_train + d_validation + d_test > 0 THEN n * d_validation / (d_train + d_validation + d_test)
                    ELSE n * {r['validation']!r} END AS q_validation
        FROM d
    """


def fill_sql(settings: SplitSettings, groups: str, which: str, quota: str, offsets: str | None = None) -> str:
    """(comp, split) of the new groups of ``groups`` matching ``which``: per stratum, in
    ``md5(salt:group_key)`` order, a group goes to train while the middle of the cumulative count
    of documents is below the stratum's ``q_train`` (``quota``), then to validation, then to test.
    ``offsets`` (stratum, offset): documents of the stratum's new groups that come before these
    (``split_shards``: the earlier shards'), added to the cumulative count."""
    offset = "coalesce(o.offset, 0)" if offsets else "0"
    join = f"LEFT JOIN ({offsets}) o ON o.stratum IS NOT DISTINCT FROM g.stratum" if offsets else ""
    return f"""
        SELECT g.comp,
               CASE WHEN {offset} + g.cum - g.size / 2.0 < q.q_train THEN 'train'
                    WHEN {offset} + g.cum - g.size / 2.0 < q.q_train + q.q_validation THEN 'validation'
                    ELSE 'test' END AS split
        FROM (
          SELECT comp, stratum, size,
                 sum(size) OVER (PARTITION BY stratum ORDER BY {stable_hash_sql("group_key", settings.salt)}, group_key
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
          FROM {groups} WHERE joined IS NULL AND {which}
        ) g JOIN ({quota}) q ON q.stratum IS NOT DISTINCT FROM g.stratum {join}
    """


def _fill(con: duckdb.DuckDBPyConnection, settings: SplitSettings, which: str, *, count_placed: bool) -> None:
    """Add the new groups matching ``which`` to ``_split_new`` (:func:`fill_sql`, with the quotas
    of :func:`quota_sql`); the documents placed are counted when ``count_placed``: those of old
    groups and of new groups filled before, by their own value, and those outside the region."""
    placed = "true" if count_placed else "false"
    con.sql(
        "CREATE OR REPLACE TABLE _split_quota AS " + quota_sql(
            settings,
            f"""SELECT m.value AS stratum, coalesce(m.prev_split, g.joined, x.split) AS split, 1 AS n
                FROM _split_members m JOIN _split_groups g USING (comp) LEFT JOIN _split_new x USING (comp)
                WHERE {placed} AND (g.joined IS NOT NULL OR x.split IS NOT NULL)
                UNION ALL  -- by difference: the documents outside the region, all placed
                SELECT stratum, split, n FROM _split_outside_counts WHERE {placed}""",
            f"SELECT stratum, sum(size)::DOUBLE AS n FROM _split_groups WHERE joined IS NULL AND {which} GROUP BY stratum",
        )
    )
    con.sql("INSERT INTO _split_new " + fill_sql(settings, "_split_groups", which, "SELECT * FROM _split_quota"))


# -- statistics


def _stats(con: duckdb.DuckDBPyConnection, settings: SplitSettings) -> SplitStats:
    rows = dict.fromkeys(SPLITS, 0)
    rows.update({s: int(n) for s, n in con.sql("SELECT split, count(*) FROM _split_assign GROUP BY 1").fetchall()})
    # a group key names one group (the smallest key hash of its component: components share no key)
    groups, straddling = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE lo <> hi) "
        "FROM (SELECT min(split) AS lo, max(split) AS hi FROM _split_assign GROUP BY group_key)"
    ).fetchall()[0]
    kept, new = con.sql("SELECT count(prev_split), count(*) - count(prev_split) FROM _split_assign").fetchall()[0]
    max_dev, shares = None, []
    if settings.stratify_by:
        order = "CASE s.split " + " ".join(f"WHEN {sql_str(s)} THEN {i}" for i, s in enumerate(SPLITS)) + " END"
        grid = con.sql(
            f"""
            WITH c AS (SELECT split, value, count(*) AS n FROM _split_assign GROUP BY ALL),
            s AS (SELECT split, sum(n) AS total FROM c GROUP BY split),
            v AS (SELECT value, sum(n) AS total FROM c GROUP BY value),
            whole AS (SELECT sum(n) AS total FROM c)
            SELECT s.split, v.value, coalesce(c.n, 0)::BIGINT AS docs, coalesce(c.n, 0) / s.total AS share,
                   abs(coalesce(c.n, 0) / s.total - v.total / whole.total) AS dev
            FROM s CROSS JOIN v CROSS JOIN whole
            LEFT JOIN c ON c.split = s.split AND c.value IS NOT DISTINCT FROM v.value
            ORDER BY {order}, v.value NULLS LAST
            """
        ).fetchall()
        shares = [[split, value, int(docs), round(float(share), 6)] for split, value, docs, share, _ in grid]
        max_dev = max((float(d) for *_, d in grid), default=0.0)
    return SplitStats(rows=rows, groups=int(groups), straddling_groups=int(straddling), kept_from_previous=int(kept),
                      new=int(new), max_share_deviation=max_dev, shares=shares, stratify_by=settings.stratify_by,
                      tolerance=float(settings.tolerance))
