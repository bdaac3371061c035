"""The GX suite of a layer at 1M rows, next to the stage that writes that layer.

    python bench/gx_checks.py [--docs 1000000] [--batch-rows 100000]

Generates ``--docs`` deduplicated documents in DuckDB (about 450 characters of pseudo-words each,
a topic keyword planted in 3 of 4; 90 % English, 10 % Chinese-like; Parquet, bench/out/), then in
one process:

1. the label stage (``run_label`` with the demo's topic rules, no classifier: no gold) and the
   labelled layer written to Parquet - the stage's own time;
2. ``validate_parquet`` of that layer against ``expectations/labelled_documents.json`` (the same
   call the ``gx_suite`` asset check makes): row-level expectations through GX's pandas engine
   on streamed Arrow batches, whole-table ones (uniqueness, row count, columns) in DuckDB;
3. the same suite with other batch sizes (``--sweep``). GX's import and context set-up are
   paid once before the timings (a warm-up validation of 1 000 rows) and reported apart.

Prints Markdown rows; peak memory is this process's VmHWM after each step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

from common import machine, vm_hwm_mb

from dataset_platform.config import demo_config_path, load_config
from dataset_platform.stages.label.stage import run_label
from dataset_platform.checks.gx_suites import NATIVE_TYPES, load_suite, validate_parquet, validate_relation
from dataset_platform.storage import memory_connection, sql_str

OUT = HERE / "out"
WORDS = ["river", "morning", "winter", "garden", "signal", "harbour", "station", "letter", "valley", "engine",
         "bridge", "window", "orchard", "meadow", "council", "ferry", "lantern", "quarry", "village", "summer"]
TOPIC_WORDS = ["researchers", "tournament", "revenue", "software", "museum"]


def generate(path: Path, n: int) -> None:
    con = memory_connection()
    words = "[" + ", ".join(sql_str(w) for w in WORDS) + "]"
    topics = "[" + ", ".join(sql_str(w) for w in TOPIC_WORDS) + "]"
    con.sql("SELECT setseed(0.42)")
    con.sql(f"""
        COPY (
          SELECT printf('%016x', i) AS id, 'bench' AS source,
                 'https://site' || (i % 50) || '.test/a/' || i AS url, 'Title ' || i AS title,
                 CASE WHEN i % 10 = 0
                      THEN '第' || i || '号 ' || repeat('早晨河流花园车站', 20 + i % 7)
                      ELSE 'note ' || i || ' ' || array_to_string(list_transform(range(60 + i % 30),
                               lambda x: {words}[1 + ((i * 7 + x * 13) % 20)::BIGINT]), ' ')
                           || CASE WHEN i % 4 <> 0 THEN ' ' || {topics}[1 + (i % 5)::BIGINT] ELSE '' END
                 END AS text,
                 CASE WHEN i % 10 = 0 THEN 'zh' ELSE 'en' END AS lang
          FROM range({n}) t(i)
        ) TO {sql_str(path)} (FORMAT parquet, ROW_GROUP_SIZE 100000)
    """)
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--sweep", default="", help="comma-separated batch sizes to time the suite with as well")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    src, labelled = OUT / f"gx-dedup-{args.docs}.parquet", OUT / f"gx-labelled-{args.docs}.parquet"
    if not src.exists():
        t0 = time.perf_counter()
        generate(src, args.docs)
        print(f"generated {args.docs} documents in {time.perf_counter() - t0:.1f}s -> {src}", file=sys.stderr)

    settings = load_config(demo_config_path()).pipeline.labels
    label_sets = {s.name: list(s.values) for s in settings.sets}
    con = memory_connection()
    t0 = time.perf_counter()
    stage = run_label(con, f"(SELECT *, length(text) AS n_chars, NULL::BIGINT AS n_words, md5(text) AS content_hash "
                           f"FROM read_parquet({sql_str(src)}))", settings, log=None)
    cols = ", ".join(["i.id", "i.source", "i.url", "i.title", "i.text", "i.lang", "length(i.text) AS n_chars",
                      "len(string_split(i.text, ' ')) AS n_words", "md5(i.text) AS content_hash",
                      *(f'k."{c}"' for name in label_sets for c in (name, f"{name}_source", f"{name}_confidence"))])
    con.sql(f"COPY (SELECT {cols} FROM read_parquet({sql_str(src)}) i JOIN kept k USING (id)) "
            f"TO {sql_str(labelled)} (FORMAT parquet, ROW_GROUP_SIZE 100000)")
    t_stage = time.perf_counter() - t0
    mem_stage = vm_hwm_mb()
    con.close()
    n = stage.input_rows

    suite = REPO / "expectations" / "labelled_documents.json"
    spec = load_suite(suite)
    native = sum(1 for e in spec["expectations"] if e["type"] in NATIVE_TYPES)
    # GX's import and context set-up (seconds, once per process; the check's process pays it once too)
    t0 = time.perf_counter()
    con = memory_connection()
    validate_relation(con, f"SELECT * FROM read_parquet({sql_str(labelled)}) LIMIT 1000", suite, label_sets=label_sets)
    con.close()
    t_warm = time.perf_counter() - t0
    print(f"GX import + first validation of 1 000 rows: {t_warm:.1f}s (not counted below)", file=sys.stderr)
    rows = []
    for batch in [args.batch_rows, *[int(x) for x in args.sweep.split(",") if x.strip()]]:
        t0 = time.perf_counter()
        outcome = validate_parquet(labelled, suite, batch_rows=batch, label_sets=label_sets)
        t_gx = time.perf_counter() - t0
        failed = [o for o in outcome.outcomes if not o.success]
        rows.append((batch, t_gx, len(outcome.outcomes), failed, vm_hwm_mb()))

    print(f"machine: {machine()}")
    print("| step | command | rows | seconds | rows/s | share of the stage's time | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    cmd = f"`python bench/gx_checks.py --docs {args.docs}`"
    print(f"| label stage (rules, demo topic set) + labelled layer written | {cmd} | {n} | {t_stage:.1f} | "
          f"{n / t_stage:,.0f} | 100 % | {mem_stage:.0f} |")
    for batch, t_gx, k, failed, mem in rows:
        print(f"| labelled_documents suite: {k} expectations ({native} in DuckDB), batches of {batch:,} rows | {cmd} | "
              f"{n} | {t_gx:.1f} | {n / t_gx:,.0f} | {t_gx / t_stage:.0%} | {mem:.0f} |")
        if failed:
            print(f"  failed: {[(o.type, o.kwargs.get('column'), o.unexpected_count) for o in failed]}", file=sys.stderr)


if __name__ == "__main__":
    main()
