"""Automatic labelling: a ``topic`` for every document from keyword rules, set-based.

Each configured topic has keywords (any language; matched case-insensitively as substrings, so
they work for Chinese without segmentation). A document's score for a topic is the number of
keyword occurrences; the topic with the highest score wins (ties: alphabetical), confidence is
its share of all hits. A document with no hit gets the default topic with confidence 0. The
source of every label is recorded (``rule:keywords``).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from dataset_platform.config import LabelSettings
from dataset_platform.core.stage import StageResult, finish_stage

STAGE = "label"
SOURCE = "rule:keywords"


def run_label(con: duckdb.DuckDBPyConnection, dedup_sql: str, settings: LabelSettings) -> StageResult:
    """Leaves ``kept`` (input columns + topic, topic_source, topic_confidence) and an empty ``rejected``."""
    con.sql(f"CREATE OR REPLACE TABLE _in AS SELECT * FROM {dedup_sql}")
    rules = [(t.name, kw.lower()) for t in settings.topics for kw in t.keywords if kw.strip()]
    kw_table = pa.table(
        {"topic": pa.array([r[0] for r in rules], pa.string()), "kw": pa.array([r[1] for r in rules], pa.string())}
    )
    con.register("_kw_arrow", kw_table)
    con.sql("CREATE OR REPLACE TABLE _kw AS SELECT * FROM _kw_arrow")
    con.unregister("_kw_arrow")
    default = settings.default_topic.replace("'", "''")
    con.sql(
        f"""
        CREATE OR REPLACE TABLE kept AS
        WITH docs AS (
          SELECT id, lower(coalesce(title, '') || '\n' || coalesce(text, '')) AS t FROM _in
        ), hits AS (
          SELECT d.id, k.topic,
                 sum((length(d.t) - length(replace(d.t, k.kw, ''))) // length(k.kw)) AS n
          FROM docs d CROSS JOIN _kw k
          GROUP BY d.id, k.topic
        ), ranked AS (
          SELECT id, topic, n, sum(n) OVER (PARTITION BY id) AS total,
                 row_number() OVER (PARTITION BY id ORDER BY n DESC, topic) AS rk
          FROM hits
        )
        SELECT i.*,
               CASE WHEN coalesce(r.n, 0) > 0 THEN r.topic ELSE '{default}' END AS topic,
               '{SOURCE}' AS topic_source,
               CASE WHEN coalesce(r.n, 0) > 0 THEN round(r.n / r.total, 4) ELSE 0.0 END AS topic_confidence
        FROM _in i LEFT JOIN ranked r ON r.id = i.id AND r.rk = 1
        ORDER BY i.id
        """
    )
    con.sql(
        "CREATE OR REPLACE TABLE rejected AS "
        "SELECT id, NULL::VARCHAR AS source, NULL::VARCHAR AS url, 'label' AS stage, '' AS rule, '' AS value "
        "FROM _in WHERE false"
    )
    n = con.sql("SELECT count(*) FROM _in").fetchall()[0][0]
    result = finish_stage(con, STAGE, input_rows=n)
    for topic, count in con.sql("SELECT topic, count(*) FROM kept GROUP BY topic ORDER BY topic").fetchall():
        result.extra[f"topic:{topic}"] = int(count)
    return result
