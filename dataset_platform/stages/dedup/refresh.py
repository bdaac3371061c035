"""A dedup refresh by difference: cost in proportion to what changed, not to the corpus.

Used by :func:`core.dedup.run_dedup` when the MinHash index holds the last run's state for the
same settings and fewer than 1/FEW of the documents are new, changed or gone; otherwise the
full pass runs (it reuses the index too, but visits every document in every step).

1. **What changed**: one pass over the input's ids and fingerprints (``row_hash``: the raw text
   hash and every carried column) against the index's state: new or changed rows (read once, by
   id, with their texts) and vanished ids.
2. **Exact**: the hash groups and URL groups that hold a changed document (its old and new
   values, and those of documents whose kept state the last run changed) are closed under
   "shares a hash or URL with" and ranked again, with the full pass's SQL; every other exact
   duplicate keeps its row.
3. **Near**: the exact keepers that are new (or whose text changed) are signed into a new index
   part; their band keys are looked up by binary search in every part's sorted keys
   (``part-<k>.bkeys.npy``), which gives the members of every bucket they touch; candidate
   pairs are made as the full pass makes them (each member with its bucket's smallest id and its
   predecessor), those touching a new document verified with signatures read by position
   (``part-<k>.sig.npy``). The clusters that hold a changed, new, gone or newly linked document
   are recomputed from their verified edges (connected components, one keeper each as in the
   full pass); every other cluster keeps its rows.

What is left on the connection is what the full pass leaves (``_meta``, ``_exact``, ``_near``,
``_keep``, ``_fresh``) plus, for the index, ``_index_state_delta`` and ``_index_docs_delta``
(the rows that changed), ``_index_edges_out`` and ``_index_flipped_out``. Nothing here imports Dagster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dataset_platform.stages.dedup.shards import BUCKET_PAIRS_SQL, SignatureReader
from dataset_platform.stages.dedup.stage import (
    EXACT_SQL,
    FEW,
    RANKED_SQL,
    _rows_of,
    drop_near_duplicates,
    sign_into_part,
)
from dataset_platform.storage import sql_str

#: closing the affected exact groups: at most this many rounds (each a pass over the slim state),
#: else the full pass runs
MAX_ROUNDS = 20


def refresh_by_difference(con, q, params, threshold, batch_size, log, index, workers, tasks=None) -> int | None:
    """Leave the outputs of a dedup run on ``con`` by difference from the index's last run and
    return the number of input documents; or None (nothing created that the full pass needs) when
    too much changed or the index cannot serve (the full pass runs then)."""
    return _Difference(con, q, params, threshold, batch_size, log or (lambda _m: None), index, workers, tasks).run()


def _one(con, sql: str):
    return con.sql(sql).fetchall()[0][0]


class _Difference:
    def __init__(self, con, q, params, threshold, batch_size, log, index, workers, tasks=None):
        self.con, self.q, self.params, self.threshold = con, q, params, threshold
        self.batch_size, self.log, self.index, self.workers, self.tasks = batch_size, log, index, workers, tasks

    def run(self) -> int | None:
        con = self.con
        if _one(con, "SELECT count(*) FROM _index_docs") == 0:  # nothing signed last time
            return None
        n = self._changes()
        if n is None:
            return None
        if not self._exact() or not self._nodes(n):
            self.log("dedup: too much changed for a refresh by difference; every document is visited")
            return None
        self._sign()
        self._near()
        con.sql("CREATE OR REPLACE TABLE _keep AS SELECT m.id, m.content_hash, m.row_hash FROM _meta m "
                "ANTI JOIN _exact e ON e.doc_id = m.id ANTI JOIN _near x ON x.doc_id = m.id")
        # the index's state and docs: only the rows that changed (appended as deltas)
        for table in ("_index_state_out", "_index_docs_out"):
            con.sql(f"DROP TABLE IF EXISTS {table}")
        con.sql(
            """
            CREATE OR REPLACE TABLE _index_state_delta AS
            SELECT id, raw_hash, row_hash, content_hash, _url_key AS url_key, source, url, lang, q, f, FALSE AS deleted
            FROM _dmeta
            UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, TRUE FROM _gone
            """
        )
        con.sql(
            """
            CREATE OR REPLACE TABLE _index_docs_delta AS
            SELECT l.id, l.content_hash, l.part, l.row, l.id NOT IN (SELECT doc_id FROM _near) AS kept, FALSE AS deleted
            FROM _live l SEMI JOIN (SELECT id FROM _R UNION SELECT id FROM _RN UNION SELECT id FROM _added) x ON x.id = l.id
            UNION ALL
            SELECT r.id, NULL, NULL, NULL, NULL, TRUE FROM _removed r ANTI JOIN _live l ON l.id = r.id
            """
        )
        # kept by the last run, dropped by this one (see stages/dedup/stage.py)
        con.sql("CREATE OR REPLACE TABLE _index_flipped_out AS SELECT p.id FROM _index_docs p "
                "SEMI JOIN (SELECT id FROM _R UNION SELECT id FROM _RN UNION SELECT id FROM _gone) x ON x.id = p.id "
                "WHERE p.kept AND (p.id IN (SELECT doc_id FROM _exact) OR p.id IN (SELECT doc_id FROM _near) "
                "OR p.id IN (SELECT id FROM _gone))")
        return n

    # -- 1. what changed
    def _changes(self) -> int | None:
        con, q = self.con, self.q
        con.sql(f"CREATE OR REPLACE TABLE _scan AS SELECT s.id::VARCHAR AS id, hash({q.raw}, {q.carried}) AS row_hash "
                f"FROM {q.src} s")
        con.sql("CREATE OR REPLACE TABLE _chg AS SELECT x.id FROM _scan x "
                "ANTI JOIN _index_state p ON p.id = x.id AND p.row_hash = x.row_hash")
        con.sql("CREATE OR REPLACE TABLE _gone AS SELECT p.id FROM _index_state p ANTI JOIN _scan x ON x.id = p.id")
        n, n_prev = _one(con, "SELECT count(*) FROM _scan"), _one(con, "SELECT count(*) FROM _index_state")
        chg, gone = _one(con, "SELECT count(*) FROM _chg"), _one(con, "SELECT count(*) FROM _gone")
        new_ids = _one(con, "SELECT count(DISTINCT c.id) FROM _chg c ANTI JOIN _index_state p ON p.id = c.id")
        con.sql("DROP TABLE _scan")
        if n != n_prev - gone + new_ids:  # an id repeated in the input: the full pass says which
            return None
        if (chg + gone) * FEW >= max(n, 1):
            return None
        self.log(f"dedup: refresh by difference: {chg} new or changed documents, {gone} gone, of {n}")
        # the new or changed rows, read once by id, for every later step (and the layer's writer)
        # (with the ids' range as a constant filter: the scan skips the row groups whose id
        # statistics lie outside it, e.g. the old rows when the new ones were appended in id order)
        within = ""
        if con.sql(f"DESCRIBE SELECT id FROM {q.src}").fetchall()[0][1] == "VARCHAR":
            lo, hi = con.sql("SELECT min(id), max(id) FROM _chg").fetchall()[0]
            if lo is not None:
                within = f" WHERE s.id BETWEEN {sql_str(lo)} AND {sql_str(hi)}"
        con.sql(f"CREATE OR REPLACE TABLE _fresh AS SELECT s.* FROM {q.src} s SEMI JOIN _chg c ON c.id = s.id::VARCHAR{within}")
        con.sql(
            f"""
            CREATE OR REPLACE TABLE _dmeta AS
            SELECT *, coalesce(url, id) AS _url_key FROM (
              SELECT {q.metadata(f"coalesce(p.content_hash, {q.norm})")}
              FROM _fresh s LEFT JOIN _index_state p ON p.id = s.id::VARCHAR AND p.raw_hash = {q.raw}
            )
            """
        )
        # the exact step's seeds: the old and new hashes and URLs of what changed (and of what
        # the last run dropped after keeping it), taken before the state is updated
        con.sql("CREATE OR REPLACE TABLE _seed AS SELECT id FROM _chg UNION SELECT id FROM _gone "
                "UNION SELECT id FROM _index_flipped")
        con.sql("CREATE OR REPLACE TABLE _H AS SELECT DISTINCT content_hash FROM ("
                "SELECT content_hash FROM _index_state SEMI JOIN _seed USING (id) "
                "UNION ALL SELECT content_hash FROM _dmeta)")
        con.sql("CREATE OR REPLACE TABLE _U AS SELECT DISTINCT url_key FROM ("
                "SELECT url_key FROM _index_state SEMI JOIN _seed USING (id) "
                "UNION ALL SELECT _url_key FROM _dmeta)")
        # every document as it now is: the state updated in place (the commit applies the same
        # delta again, which changes nothing), seen as _meta
        con.sql("DELETE FROM _index_state WHERE id IN (SELECT id FROM _chg UNION ALL SELECT id FROM _gone)")
        con.sql("INSERT INTO _index_state SELECT id, raw_hash, row_hash, content_hash, _url_key, source, url, lang, q, f "
                "FROM _dmeta")
        con.sql("DROP TABLE IF EXISTS _meta")  # (a full pass's, on the same connection)
        con.sql("CREATE OR REPLACE VIEW _meta AS SELECT id, source, url, lang, q, f, raw_hash, content_hash, "
                "url_key AS _url_key, row_hash FROM _index_state")
        return n

    # -- 2. exact groups touched by a change, ranked again
    def _exact(self) -> bool:
        con = self.con
        for _ in range(MAX_ROUNDS):
            con.sql("CREATE OR REPLACE TABLE _R AS SELECT m.* FROM _meta m "
                    "WHERE m.content_hash IN (SELECT content_hash FROM _H) OR m._url_key IN (SELECT url_key FROM _U)")
            grew = _one(con, "SELECT count(*) FROM (SELECT DISTINCT content_hash FROM _R) r "
                             "ANTI JOIN _H h ON h.content_hash = r.content_hash")
            grew += _one(con, "SELECT count(*) FROM (SELECT DISTINCT _url_key FROM _R) r "
                              "ANTI JOIN _U u ON u.url_key = r._url_key")
            if not grew:
                break
            con.sql("INSERT INTO _H SELECT DISTINCT r.content_hash FROM _R r ANTI JOIN _H h ON h.content_hash = r.content_hash")
            con.sql("INSERT INTO _U SELECT DISTINCT r._url_key FROM _R r ANTI JOIN _U u ON u.url_key = r._url_key")
        else:  # groups chained this long are the full pass's job
            return False
        con.sql(RANKED_SQL.format(table="_rankedR", meta="_R"))
        con.sql("CREATE OR REPLACE TABLE _exact AS "
                "SELECT e.* FROM _index_exact e ANTI JOIN _R r ON r.id = e.doc_id ANTI JOIN _gone g ON g.id = e.doc_id "
                "UNION ALL " + EXACT_SQL.format(ranked="_rankedR"))
        self.log(f"dedup: {_one(con, 'SELECT count(*) FROM _R')} documents in the exact groups of a change; "
                 f"{_one(con, 'SELECT count(*) FROM _exact')} exact duplicates (same normalised text or URL)")
        return True

    # -- 3. near: which exact keepers are new, which are gone
    def _nodes(self, n: int) -> bool:
        con = self.con
        con.sql("CREATE OR REPLACE TABLE _RK AS SELECT id, content_hash FROM _rankedR WHERE dup_by IS NULL")
        con.sql("CREATE OR REPLACE TABLE _removed AS SELECT d.id, d.content_hash FROM _index_docs d "
                "SEMI JOIN (SELECT id FROM _R UNION ALL SELECT id FROM _gone) x ON x.id = d.id "
                "ANTI JOIN _RK k ON k.id = d.id AND k.content_hash = d.content_hash")
        con.sql("CREATE OR REPLACE TABLE _added AS SELECT k.id, k.content_hash FROM _RK k "
                "ANTI JOIN _index_docs d ON d.id = k.id AND d.content_hash = k.content_hash")
        return _one(con, "SELECT count(*) FROM _added") * FEW < max(n, 1)

    def _sign(self) -> None:
        con, q, index = self.con, self.q, self.index
        new = _one(con, "SELECT count(*) FROM _added")
        lang = "s.lang" if "lang" in q.cols else "NULL::VARCHAR AS lang"
        query = (f"SELECT d.id, d.content_hash, s.text, {lang} FROM {_rows_of(con, '_added', '_fresh', q.src)} s "
                 "JOIN _added d ON d.id = s.id::VARCHAR ORDER BY d.id")
        reused = _one(con, "SELECT count(*) FROM _index_docs") - _one(con, "SELECT count(*) FROM _removed")
        self.signed = sign_into_part(con, query, new, reused, index, self.params, self.batch_size, self.workers,
                                     self.log, self.tasks)
        con.sql(
            f"""
            CREATE OR REPLACE TABLE _live AS
            SELECT d.id, d.content_hash, d.part, d.row, FALSE AS new FROM _index_docs d
            ANTI JOIN _removed r ON r.id = d.id AND r.content_hash = d.content_hash
            UNION ALL
            SELECT a.id, a.content_hash, {index.new_part}::INTEGER AS part, p.row, TRUE AS new
            FROM _added a JOIN _signed p ON p.id = a.id
            """
        )

    def _near(self) -> None:
        con = self.con
        self._candidates()
        a, b, sim = self._similarities("SELECT a, b FROM _cand")
        ok = sim >= self.threshold
        con.register("_e", pa.table({"a": a.take(np.flatnonzero(ok)), "b": b.take(np.flatnonzero(ok)),
                                     "similarity": pa.array(np.asarray(sim)[ok].round(4))}))
        con.sql("CREATE OR REPLACE TABLE _new_edges AS SELECT a AS a_id, b AS b_id, similarity FROM _e")
        con.unregister("_e")
        con.sql(
            """
            CREATE OR REPLACE TABLE _index_edges_out AS
            SELECT e.* FROM _index_edges e ANTI JOIN _removed r ON r.id = e.a_id ANTI JOIN _removed r2 ON r2.id = e.b_id
            UNION ALL SELECT * FROM _new_edges
            """
        )
        old = _one(con, "SELECT count(*) FROM _index_edges_out") - int(ok.sum())
        self.log(f"dedup: {int(ok.sum())} of {len(sim)} candidate pairs verified (estimated Jaccard >= {self.threshold:g})"
                 + (f"; {old} verified pairs reused from the index" if old else ""))
        # the clusters to compute again: those of a document that is new, gone, changed, newly
        # linked or whose kept state the last run changed; the rest keep their rows
        con.sql(
            """
            CREATE OR REPLACE TABLE _S AS
            SELECT id FROM _added UNION SELECT id FROM _removed UNION SELECT id FROM _chg
            UNION SELECT id FROM _index_flipped UNION SELECT a_id FROM _new_edges UNION SELECT b_id FROM _new_edges
            """
        )
        con.sql("CREATE OR REPLACE TABLE _Kaff AS SELECT DISTINCT keeper_id FROM _index_near "
                "WHERE doc_id IN (SELECT id FROM _S) OR keeper_id IN (SELECT id FROM _S)")
        con.sql(
            """
            CREATE OR REPLACE TABLE _RN AS
            SELECT x.id, (row_number() OVER (ORDER BY x.id) - 1)::INTEGER AS i FROM (
              SELECT id FROM _S UNION SELECT keeper_id FROM _Kaff
              UNION SELECT doc_id FROM _index_near WHERE keeper_id IN (SELECT keeper_id FROM _Kaff)
            ) x SEMI JOIN _live l ON l.id = x.id
            """
        )
        con.sql("CREATE OR REPLACE TABLE _near AS SELECT n.* FROM _index_near n "
                "WHERE n.keeper_id NOT IN (SELECT keeper_id FROM _Kaff) AND n.doc_id NOT IN (SELECT id FROM _RN)")
        self._clusters()

    def _candidates(self) -> None:
        """``_cand`` (a, b): pairs of bucket members, as the full pass makes them, that touch a
        new document; from binary searches of the new documents' band keys in every part."""
        con, index, params = self.con, self.index, self.params
        found = []
        if self.signed is not None:
            keys = self.signed.keys[self.signed.has]  # the new documents' band keys (those with shingles)
            for part in sorted({*index.parts, self.signed.part}):
                if not index.array_path(part, "bkeys").exists():
                    continue
                bkeys, brows = index.arrays(part, "bkeys"), index.arrays(part, "brows")
                for band in range(params.bands):
                    k = np.ascontiguousarray(keys[:, band])
                    lo = np.searchsorted(bkeys[band], k, "left")
                    hi = np.searchsorted(bkeys[band], k, "right")
                    count = hi - lo
                    total = int(count.sum())
                    if not total:
                        continue
                    start = np.repeat(lo, count)
                    step = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
                    found.append(pa.table({
                        "band": pa.array(np.full(total, band, np.int16)),
                        "key": pa.array(np.repeat(k, count)),
                        "part": pa.array(np.full(total, part, np.int32)),
                        "row": pa.array(np.asarray(brows[band][start + step], np.int32)),
                    }))
        schema = pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("part", pa.int32()), ("row", pa.int32())])
        con.register("_m", pa.concat_tables(found) if found else schema.empty_table())
        con.sql("CREATE OR REPLACE TABLE _tb AS SELECT DISTINCT m.band, m.key, l.id, l.new "
                "FROM _m m JOIN _live l ON l.part = m.part AND l.row = m.row")
        con.unregister("_m")
        con.sql(
            f"""
            CREATE OR REPLACE TABLE _cand AS
            WITH e AS ({BUCKET_PAIRS_SQL.format(m="id", bands="_tb")}),
            flags AS (SELECT id, bool_or(new) AS new FROM _tb GROUP BY id)
            SELECT e.a, e.b FROM e JOIN flags fa ON fa.id = e.a JOIN flags fb ON fb.id = e.b
            WHERE fa.new OR fb.new ORDER BY e.a, e.b
            """
        )

    def _similarities(self, pairs_sql: str):
        """(a ids, b ids, estimated Jaccard) of the pairs of ``pairs_sql``: signatures read by
        position from the parts' arrays."""
        t = self.con.sql(
            f"SELECT p.a, p.b, la.part AS a_part, la.row AS a_row, lb.part AS b_part, lb.row AS b_row "
            f"FROM ({pairs_sql}) p JOIN _live la ON la.id = p.a JOIN _live lb ON lb.id = p.b ORDER BY p.a, p.b"
        ).to_arrow_table()
        sim = SignatureReader(self.index.path, self.params.permutations).similarity(
            *(t.column(c).to_numpy() for c in ("a_part", "a_row", "b_part", "b_row")))
        return t.column("a"), t.column("b"), sim

    def _clusters(self) -> None:
        con = self.con
        nodes = _one(con, "SELECT count(*) FROM _RN")
        if nodes == 0:
            return
        con.sql("CREATE OR REPLACE TABLE _RE AS SELECT ra.i AS a, rb.i AS b FROM _index_edges_out e "
                "JOIN _RN ra ON ra.id = e.a_id JOIN _RN rb ON rb.id = e.b_id")
        if _one(con, "SELECT count(*) FROM _RE") == 0:
            return
        # one keeper per cluster, as the full pass picks it
        drop_near_duplicates(con, "SELECT a, b FROM _RE",
                             "SELECT r.i AS node, r.id, coalesce(x.kept, FALSE) AS kept, m.q, m.f "
                             "FROM _RN r JOIN _meta m ON m.id = r.id JOIN _live l ON l.id = r.id "
                             "LEFT JOIN _index_docs x ON x.id = l.id AND x.content_hash = l.content_hash",
                             self.log, self.tasks, self.index)
        a, b, sim = self._similarities("SELECT id AS a, keeper_id AS b FROM _drop")
        con.register("_s", pa.table({"doc_id": a, "keeper_id": b, "similarity": pa.array(np.asarray(sim).round(4))}))
        con.sql("INSERT INTO _near SELECT doc_id, keeper_id, similarity FROM _s ORDER BY doc_id")
        con.unregister("_s")
