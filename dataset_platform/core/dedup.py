"""Deduplication: exact (set-based in DuckDB), then near-duplicates (MinHash-LSH).

Exact: two documents are exact duplicates when their text is equal after lower-casing and
folding runs of whitespace (``content_hash``), or when they share a URL. In each group one keeper
is chosen deterministically (lowest URL, then lowest id); every other member is dropped with rule
``exact_duplicate`` / ``duplicate_url``.

Near: the exact keepers are streamed in bounded batches through :mod:`core.minhash` (signatures
and LSH band keys, numpy); the band keys go into DuckDB, and documents sharing a band key become
candidate edges (each member linked to the bucket's smallest member and to its predecessor in the
bucket: linear in the bucket size, never all pairs); edges whose estimated Jaccard similarity is
below ``threshold`` are dropped (verification); connected components (scipy) are the clusters.
One keeper per cluster: highest ``quality`` (when the input has it), then earliest ``fetched_at``
(when present), then smallest id. Others are dropped with rule ``near_duplicate``.

``duplicate_clusters`` has one row per dropped document: cluster_id (the keeper's content hash),
doc_id, keeper_id (always a kept document: an exact duplicate of a document that was then dropped
as a near-duplicate points at the final keeper), similarity (1.0 exact; estimated Jaccard with the
keeper for near), kind (exact | near). The rejected value is the keeper id.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from dataset_platform.core.minhash import MinHashParams, band_keys, shingle_hashes, signatures
from dataset_platform.core.stage import StageResult, finish_stage

STAGE = "dedup"
CONTENT_HASH_SQL = "md5(lower(regexp_replace(trim(text), '\\s+', ' ', 'g')))"


def run_dedup(
    con: duckdb.DuckDBPyConnection,
    cleaned_sql: str,
    settings=None,
    *,
    batch_size: int = 5000,
    log: Callable[[str], None] | None = None,
    index_path: Path | None = None,
) -> StageResult:
    """Leaves ``kept``, ``rejected`` and ``clusters`` on ``con``.

    ``cleaned_sql`` is FROM-able with at least id and text (url, lang, quality, fetched_at
    optional). ``settings``: ``config.DedupSettings`` (or anything with its fields); None: defaults.

    ``index_path``: the MinHash index of the previous run (Parquet: id, content_hash, sig, kept),
    read if it exists and rewritten: signatures of documents whose text is unchanged are reused
    (a refresh computes signatures only for new or changed documents), and a document kept last
    time wins its cluster over newcomers (it may already be published).
    """
    con.sql(f"CREATE OR REPLACE TABLE _in AS SELECT * FROM {cleaned_sql}")
    cols = {r[0] for r in con.sql("DESCRIBE _in").fetchall()}
    for col in ("source", "url", "lang"):
        if col not in cols:
            con.sql(f"ALTER TABLE _in ADD COLUMN {col} VARCHAR")
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _hashed AS
        SELECT *, {CONTENT_HASH_SQL} AS content_hash,
               coalesce(url, id) AS _url_key
        FROM _in
        """
    )
    # Group by content hash, then merge groups that share a URL (a URL seen twice, e.g. in two
    # sources, is one document). Keeper: lowest URL, then lowest id - stable across runs.
    con.sql(
        """
        CREATE OR REPLACE TABLE _ranked AS
        WITH by_hash AS (
          SELECT *, first_value(id) OVER w AS hash_keeper,
                    row_number() OVER w AS hash_rank
          FROM _hashed
          WINDOW w AS (PARTITION BY content_hash ORDER BY _url_key, id)
        ), by_url AS (
          SELECT *, first_value(hash_keeper) OVER w2 AS keeper_id,
                    row_number() OVER w2 AS url_rank
          FROM by_hash
          WINDOW w2 AS (PARTITION BY _url_key ORDER BY hash_rank, id)
        )
        SELECT *,
          CASE WHEN hash_rank > 1 THEN 'content' WHEN url_rank > 1 THEN 'url' END AS dup_by
        FROM by_url
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TABLE _exact AS
        SELECT r.content_hash AS cluster_id, r.id AS doc_id,
               CASE WHEN r.dup_by = 'content' THEN r.hash_keeper ELSE r.keeper_id END AS keeper_id,
               1.0 AS similarity, 'exact' AS kind,
               CASE WHEN r.dup_by = 'content' THEN 'exact_duplicate' ELSE 'duplicate_url' END AS rule
        FROM _ranked r WHERE r.dup_by IS NOT NULL
        """
    )
    near_on = settings is None or getattr(settings, "near", True)
    params = _params(settings)
    threshold = 0.7 if settings is None else float(settings.threshold)
    # (doc_id, keeper_id, similarity) of near-duplicates among the exact keepers
    con.sql("CREATE OR REPLACE TABLE _near (doc_id VARCHAR, keeper_id VARCHAR, similarity DOUBLE)")
    if near_on:
        _near_duplicates(con, cols, params, threshold, batch_size, log, index_path)
    con.sql(
        """
        CREATE OR REPLACE TABLE kept AS
        SELECT * EXCLUDE (_url_key, hash_keeper, hash_rank, keeper_id, url_rank, dup_by)
        FROM _ranked WHERE dup_by IS NULL AND id NOT IN (SELECT doc_id FROM _near) ORDER BY id
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TABLE clusters AS
        WITH hashes AS (SELECT id, content_hash FROM _ranked),
        near AS (
          SELECT h.content_hash AS cluster_id, n.doc_id, n.keeper_id, n.similarity, 'near' AS kind,
                 'near_duplicate' AS rule
          FROM _near n JOIN hashes h ON h.id = n.keeper_id
        ),
        exact AS (  -- an exact keeper dropped as a near-duplicate hands its duplicates on
          SELECT coalesce(n.cluster_id, e.cluster_id) AS cluster_id, e.doc_id,
                 coalesce(n.keeper_id, e.keeper_id) AS keeper_id,
                 coalesce(n.similarity, e.similarity) AS similarity, e.kind, e.rule
          FROM _exact e LEFT JOIN near n ON n.doc_id = e.keeper_id
        )
        SELECT * FROM exact UNION ALL SELECT * FROM near
        """
    )
    con.sql(
        f"""
        CREATE OR REPLACE TABLE rejected AS
        SELECT r.id, r.source, r.url, '{STAGE}' AS stage, c.rule, c.keeper_id AS value
        FROM _ranked r JOIN clusters c ON c.doc_id = r.id ORDER BY r.id
        """
    )
    con.sql("CREATE OR REPLACE TABLE clusters AS SELECT * EXCLUDE (rule) FROM clusters ORDER BY doc_id")
    if near_on and index_path is not None:
        from dataset_platform.storage import sql_str, write_parquet

        write_parquet(
            con,
            f"SELECT i.id, i.content_hash, {sql_str(_params_tag(params))} AS params, i.sig, "
            "i.id IN (SELECT id FROM kept) AS kept FROM _index_out i ORDER BY i.id",
            index_path,
        )
    n = con.sql("SELECT count(*) FROM _in").fetchall()[0][0]
    result = finish_stage(con, STAGE, input_rows=n)
    result.extra["clusters"] = con.sql("SELECT count(DISTINCT cluster_id) FROM clusters").fetchall()[0][0]
    for kind, docs in con.sql("SELECT kind, count(*) FROM clusters GROUP BY 1 ORDER BY 1").fetchall():
        result.extra[f"{kind}_duplicates"] = int(docs)
    # duplicate rate by source, and how large clusters are (keeper included)
    for source, rate in con.sql(
        "SELECT coalesce(i.source, '-'), round(avg(CASE WHEN c.doc_id IS NULL THEN 0 ELSE 1 END), 4) "
        "FROM _in i LEFT JOIN clusters c ON c.doc_id = i.id GROUP BY 1 ORDER BY 1"
    ).fetchall():
        result.extra[f"duplicate_rate:{source}"] = float(rate)
    for size, count in con.sql(
        "SELECT size, count(*) FROM (SELECT keeper_id, count(*) + 1 AS size FROM clusters GROUP BY 1) GROUP BY 1 ORDER BY 1"
    ).fetchall():
        result.extra[f"clusters_of_size:{size}"] = int(count)
    return result


def _params(settings) -> MinHashParams:
    if settings is None:
        return MinHashParams()
    return MinHashParams(ngram=settings.ngram, cjk_ngram=settings.cjk_ngram, bands=settings.bands,
                         rows=settings.rows, seed=settings.seed)


def _params_tag(params: MinHashParams) -> str:
    return f"{params.ngram}/{params.cjk_ngram}/{params.bands}x{params.rows}/{params.seed}"


def _near_duplicates(con, cols: set[str], params: MinHashParams, threshold: float, batch_size: int, log,
                     index_path: Path | None = None) -> None:
    """Fill ``_near`` from the exact keepers of ``_ranked`` (see the module docstring)."""
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from dataset_platform.storage import sql_str

    quality = "TRY_CAST(quality AS DOUBLE)" if "quality" in cols else "NULL::DOUBLE"
    fetched = "TRY_CAST(fetched_at AS TIMESTAMPTZ)" if "fetched_at" in cols else "NULL::TIMESTAMPTZ"
    tag = _params_tag(params)
    if index_path is not None and index_path.exists():
        con.sql(f"CREATE OR REPLACE TABLE _index AS SELECT * FROM read_parquet({sql_str(index_path)}) "
                f"WHERE params = {sql_str(tag)}")  # other settings: nothing reusable
    else:
        con.sql("CREATE OR REPLACE TABLE _index (id VARCHAR, content_hash VARCHAR, params VARCHAR, sig BLOB, kept BOOLEAN)")
    con.sql(
        f"""
        CREATE OR REPLACE TABLE _docs AS
        SELECT (row_number() OVER (ORDER BY r.id) - 1)::INTEGER AS doc, r.id, r.content_hash, {quality} AS q,
               {fetched} AS f, coalesce(x.kept, FALSE) AS was_kept, x.sig AS cached
        FROM _ranked r LEFT JOIN _index x ON x.id = r.id AND x.content_hash = r.content_hash
        WHERE r.dup_by IS NULL
        """
    )
    n = con.sql("SELECT count(*) FROM _docs").fetchall()[0][0]
    sig = np.empty((n, params.permutations), np.uint64)
    width = params.permutations * 8
    # signatures kept from the previous run (text unchanged)
    cached = con.sql("SELECT doc, cached FROM _docs WHERE cached IS NOT NULL ORDER BY doc").arrow().read_all()
    if cached.num_rows:
        docs = cached.column(0).to_numpy()
        blob = b"".join(cached.column(1).to_pylist())
        sig[docs] = np.frombuffer(blob, np.uint64).reshape(len(docs), params.permutations)
    reused = cached.num_rows
    new = n - reused
    cur = con.cursor()
    reader = cur.sql(
        "SELECT d.doc, r.text, r.lang FROM _docs d JOIN _ranked r USING (id) WHERE d.cached IS NULL ORDER BY d.doc"
    ).to_arrow_reader(batch_size)
    done = 0
    for b in reader:
        docs = b.column(0).to_numpy()
        sh, off = shingle_hashes(b.column(1).to_pylist(), b.column(2).to_pylist(), params)
        sig[docs] = signatures(sh, off, params)
        done += b.num_rows
        if log:
            log(f"dedup: signatures for {done}/{new} new or changed documents ({reused} reused)")
    cur.close()
    # band keys of every document (cheap next to the signatures), into DuckDB
    con.sql("CREATE OR REPLACE TABLE _bands (doc INTEGER, band SMALLINT, key UBIGINT)")
    empty = (sig == np.iinfo(np.uint64).max).all(axis=1)
    for lo in range(0, n, 50_000):
        part = sig[lo : lo + 50_000]
        keys = band_keys(part, params)
        d_idx, band = np.nonzero(np.broadcast_to(~empty[lo : lo + 50_000, None], keys.shape))
        con.register("_b", pa.table({"doc": pa.array((d_idx + lo).astype(np.int32)),
                                     "band": pa.array(band.astype(np.int16)),
                                     "key": pa.array(keys[d_idx, band])}))
        con.sql("INSERT INTO _bands SELECT * FROM _b")
        con.unregister("_b")
    con.register("_sig", pa.table({"doc": pa.array(np.arange(n, dtype=np.int32)),
                                   "sig": pa.FixedSizeBinaryArray.from_buffers(
                                       pa.binary(width), n, [None, pa.py_buffer(sig.tobytes())])}))
    con.sql("CREATE OR REPLACE TABLE _sigs AS SELECT doc, CAST(sig AS BLOB) AS sig FROM _sig")
    con.unregister("_sig")
    if index_path is not None:
        con.sql("CREATE OR REPLACE TABLE _index_out AS SELECT d.id, d.content_hash, s.sig FROM _docs d JOIN _sigs s USING (doc)")
    edges = con.sql(
        """
        WITH b AS (
          SELECT doc, min(doc) OVER w AS root, lag(doc) OVER (PARTITION BY band, key ORDER BY doc) AS prev
          FROM _bands WINDOW w AS (PARTITION BY band, key)
        )
        SELECT DISTINCT a, b FROM (
          SELECT root AS a, doc AS b FROM b WHERE doc <> root
          UNION ALL SELECT prev, doc FROM b WHERE prev IS NOT NULL AND prev <> root
        ) ORDER BY a, b
        """
    ).fetchnumpy()
    a, b = edges["a"].astype(np.int64), edges["b"].astype(np.int64)
    if a.size == 0:
        return
    sim = (sig[a] == sig[b]).mean(axis=1)
    ok = sim >= threshold
    a, b = a[ok], b[ok]
    if log:
        log(f"dedup: {int(ok.sum())} of {ok.size} candidate pairs verified (estimated Jaccard >= {threshold:g})")
    if a.size == 0:
        return
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    member = np.flatnonzero(sizes[label] > 1)
    con.register("_c", pa.table({"doc": pa.array(member.astype(np.int32)), "comp": pa.array(label[member].astype(np.int64))}))
    ranked = con.sql(
        """
        SELECT c.doc, c.comp, d.id,
               first_value(c.doc) OVER w AS keeper_doc, first_value(d.id) OVER w AS keeper_id,
               row_number() OVER w AS rank
        FROM _c c JOIN _docs d USING (doc)
        WINDOW w AS (PARTITION BY c.comp ORDER BY d.was_kept DESC, d.q DESC NULLS LAST, d.f ASC NULLS LAST, d.id)
        """
    ).fetchnumpy()
    con.unregister("_c")
    drop = ranked["rank"] > 1
    docs, keepers = ranked["doc"][drop].astype(np.int64), ranked["keeper_doc"][drop].astype(np.int64)
    similarity = (sig[docs] == sig[keepers]).mean(axis=1)
    con.register("_n", pa.table({"doc_id": pa.array(ranked["id"][drop], pa.string()),
                                 "keeper_id": pa.array(ranked["keeper_id"][drop], pa.string()),
                                 "similarity": pa.array(similarity.round(4))}))
    con.sql("INSERT INTO _near SELECT * FROM _n")
    con.unregister("_n")
