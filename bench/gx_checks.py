"""Every asset check of the graph on a 1M-row work folder stored by batch, next to the stages' times.

    python bench/gx_checks.py [--docs 1000000] [--parts 20] [--phase all|build|checks]

Builds (once, cached in ``bench/out/gxwd-<docs>/``) a work folder as a full run leaves it, with
``--parts`` parts of ``docs / parts`` documents in every layer stored by batch (news-sized
synthetic texts, about 3 000 characters: 6-7 paragraphs drawn from 20 000 generated ones, 10 %
Chinese-like, a topic keyword in 3 of 4):

* written directly with ``storage/batched.py``: the raw layer of one dump source (one part per
  landed batch, its ``crawl_log`` file and the source manifest's merged list), and the
  extracted, cleaned and deduplicated layers (one part per raw part, as the runner keys them);
* computed by the real stages (``runner.materialise``): labelled and decontaminated documents
  (the demo's topic rules, no gold, no evaluation set), rejected_documents, and the release
  (``materialise_release``): their times are the stage times the checks are compared with.

Then it times every check's Dagster-free logic (what ``defs/quality.py`` calls) on the **full
build** (every part new to the checks), lands one more batch (one new part in every layer, the
stages run again: the **refresh**) and times the checks again. Stages not run here (extract,
clean, dedup, the raw ingest) are compared with BENCHMARKS.md's figures, scaled to the rows.

``--phase checks`` re-times the checks on the cached folder (the refresh's batch is removed first,
and the checks' state, so the full build is timed again). GX's import and context are paid once
before the timings (a warm-up suite on 1 000 rows) and reported apart. Prints Markdown rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

from common import VOCAB, WEIGHTS, machine, vm_hwm_mb

from dataset_platform.config import demo_config_path, load_config
from dataset_platform.storage import memory_connection, sql_str, write_parquet
from dataset_platform.storage.batched import BatchedLayer, PartInfo, ids_fingerprint
from dataset_platform.workdir import Workdir

OUT = HERE / "out"
SOURCE = "bench"
TOPIC_WORDS = ["researchers", "tournament", "revenue", "software", "museum"]
CJK = "早晨河流花园车站信件山谷引擎桥梁窗户果园草地议会渡船灯笼采石场村庄夏天"
N_PARAGRAPHS = 20_000
#: stage throughput from BENCHMARKS.md (documents/s, M1) for the stages this bench does not run
STAGE_RATES = {"extracted_documents": ("extract", 425.0), "cleaned_documents": ("clean", 939.0)}
#: dedup at 1M (BENCHMARKS.md, run C): full pass and a refresh by difference
DEDUP_FULL_S, DEDUP_REFRESH_S = 118.0, 5.5
#: raw ingest (WARC -> batch -> raw part): records/s (BENCHMARKS.md)
INGEST_RATE = 1854.0


# ------------------------------------------------------------------ generated documents


def paragraphs_table(con) -> None:
    rng = random.Random(7)
    paras = []
    for _ in range(N_PARAGRAPHS):
        words = rng.choices(VOCAB, weights=WEIGHTS, k=rng.randint(60, 90))
        paras.append(" ".join(words).capitalize() + ".")
    cjk = ["".join(rng.choices(CJK, k=rng.randint(150, 220))) + "。" for _ in range(2000)]
    import pyarrow as pa

    con.register("_p", pa.table({"p": paras}))
    con.register("_c", pa.table({"p": cjk}))
    con.sql("CREATE OR REPLACE TABLE para AS SELECT list(p) AS l FROM _p")
    con.sql("CREATE OR REPLACE TABLE cjk AS SELECT list(p) AS l FROM _c")


def batch_id(k: int) -> str:
    import hashlib

    return f"{SOURCE}-{hashlib.sha256(f'batch {k}'.encode()).hexdigest()[:16]}"


def docs_sql(start: int, n: int) -> str:
    """The documents start..start+n-1 (id order is not row order: ids are md5s)."""
    pick = "para.l[1 + ((i * {a} + {b}) % {n})::BIGINT]"
    en = " || '\n' || ".join(pick.format(a=a, b=b, n=N_PARAGRAPHS) for a, b in
                             ((7919, 1), (104729, 3), (1299709, 5), (15485863, 7), (32452843, 11), (49979687, 13)))
    zh = " || ".join(f"cjk.l[1 + ((i * {a} + {b}) % 2000)::BIGINT]" for a, b in ((7919, 1), (104729, 3), (1299709, 5)))
    topics = "[" + ", ".join(sql_str(w) for w in TOPIC_WORDS) + "]"
    return f"""
        SELECT left(md5('{SOURCE} ' || url), 16) AS id, * FROM (
          SELECT i, 'https://site' || (i % 997) || '.test/news/' || i AS url, 'Headline number ' || i AS title,
                 CASE WHEN i % 10 = 0 THEN '第' || i || '号。' || {zh}
                      ELSE 'Note ' || i || '. ' || {en}
                           || CASE WHEN i % 4 <> 0 THEN ' The ' || {topics}[1 + (i % 5)::BIGINT] || ' said so.' ELSE '' END
                 END AS text,
                 CASE WHEN i % 10 = 0 THEN 'zh' ELSE 'en' END AS lang
          FROM range({start}, {start + n}) t(i), para, cjk)
    """


LAYER_SQL = {
    # the raw layer of a dump source: html pages around the text
    "raw_pages": """
        SELECT id, '{source}' AS source, '{batch}' AS crawl_id, url, NULL AS fetch_url, 200 AS status,
               'text/html' AS content_type, 'utf-8' AS charset,
               TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i) AS fetched_at, NULL AS depth, NULL AS referer,
               strlen(text) + 120 AS body_bytes, md5(text) AS content_hash, NULL AS etag, NULL AS last_modified,
               '{{"content-type": "text/html"}}' AS headers, NULL AS title, NULL AS text,
               '<html><head><title>' || title || '</title></head><body><article><p>'
                 || replace(text, '\n', '</p><p>') || '</p></article></body></html>' AS html
        FROM d""",
    "crawl_log": """
        SELECT id, '{source}' AS source, '{batch}' AS crawl_id, row_number() OVER (ORDER BY i) AS seq, url,
               NULL AS fetch_url, 'fetched' AS outcome, NULL AS detail, 200 AS status, 'text/html' AS content_type,
               TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(i) AS fetched_at, NULL AS depth, NULL AS referer,
               strlen(text) + 120 AS body_bytes, md5(text) AS content_hash
        FROM d""",
    "extracted_documents": """
        SELECT id, '{source}' AS source, '{batch}' AS crawl_id, url, title, NULL AS date, text, lang,
               0.99 AS lang_score, 'trafilatura' AS extractor FROM d""",
    "cleaned_documents": """
        SELECT id, '{source}' AS source, url, title, text, lang, length(text) AS n_chars,
               len(string_split(text, ' ')) AS n_words, 0 AS pii_email, 0 AS pii_phone, 0 AS pii_ip, 0 AS pii_card,
               0 AS pii_iban, 0 AS pii_cn_id, '{{"c4.lines":' || (i % 40) || '}}' AS quality,
               []::VARCHAR[] AS annotations, hash(text) AS text_hash FROM d""",
    "deduplicated_documents": """
        SELECT id, '{source}' AS source, url, title, text, lang, length(text) AS n_chars,
               len(string_split(text, ' ')) AS n_words, 0 AS pii_email, 0 AS pii_phone, 0 AS pii_ip, 0 AS pii_card,
               0 AS pii_iban, 0 AS pii_cn_id, '{{"c4.lines":' || (i % 40) || '}}' AS quality,
               []::VARCHAR[] AS annotations, md5(lower(text)) AS content_hash FROM d""",
}
DIRECT = ("extracted_documents", "cleaned_documents", "deduplicated_documents")


def land_batches(con, wd: Workdir, first: int, count: int, per_part: int) -> None:
    """Parts ``first``..``first+count-1`` in every directly written layer, one commit per layer."""
    raw = BatchedLayer(wd.raw_source(SOURCE), f"raw_pages/{SOURCE}")
    layers = {name: BatchedLayer(wd.layer_dir(name), name) for name in DIRECT}
    with raw.locked() as raw_l:
        held = {name: bl.locked() for name, bl in layers.items()}
        opened = {name: cm.__enter__() for name, cm in held.items()}
        try:
            merged = list(raw_l.extra.get("merged", []))
            for k in range(first, first + count):
                b = batch_id(k)
                con.sql(f"CREATE OR REPLACE TEMP TABLE d AS {docs_sql(k * per_part, per_part)}")
                fmt = {"source": SOURCE, "batch": b}
                write_parquet(con, LAYER_SQL["crawl_log"].format(**fmt) + " ORDER BY seq",
                              wd.crawl_log_file(SOURCE, b), layer="crawl_log")
                st = raw_l.stage(b)
                rows = write_parquet(con, LAYER_SQL["raw_pages"].format(**fmt) + " ORDER BY id", st / "data.parquet",
                                     layer="raw_pages")
                ids = ids_fingerprint(con, f"SELECT id FROM read_parquet({sql_str(st / 'data.parquet')})")
                raw_l.staged(PartInfo(b, chain=f"raw:{SOURCE}/{b}", ids=ids, rows=rows,
                                      counters={"batch": b, "rows": rows}))
                merged.append(b)
                for name, bl in opened.items():
                    key = f"{SOURCE}/{b}"
                    st = bl.stage(key)
                    n = write_parquet(con, LAYER_SQL[name].format(**fmt) + " ORDER BY id", st / "data.parquet",
                                      layer=name)
                    write_parquet(con, "SELECT id, 'bench' AS source, url, 'x' AS stage, 'x' AS rule, 'x' AS value FROM d "
                                       "WHERE false", st / "rejected.parquet", layer="rejected_documents")
                    bl.staged(PartInfo(key, chain=f"bench:{name}:{b}", ids=ids, input_ids=ids, rows=n,
                                       counters={"input": n, "kept": n, "rejected": 0, "reasons": {}}))
                print(f"  batch {k}: {rows} rows", file=sys.stderr)
            raw_l.commit(extra={**raw_l.extra, "merged": merged})
            for name, bl in opened.items():
                stage = {"extracted_documents": "extract", "cleaned_documents": "clean",
                         "deduplicated_documents": "dedup"}[name]
                extra = {"stage": stage, "prepared": {}}
                if name == "deduplicated_documents":  # a global stage keeps its totals in the manifest
                    total = sum(p.rows for p in bl.parts.values()) + sum(p.rows for p in bl._staged.values())
                    extra["result"] = {"input": total, "kept": total, "rejected": 0, "reasons": {}, "extra": {}}
                bl.commit(extra=extra)
        finally:
            for cm in held.values():
                cm.__exit__(None, None, None)
    if not wd.rejects("dedup").exists():
        write_parquet(con, "SELECT 'x' AS id, 'x' AS source, 'x' AS url, 'x' AS stage, 'x' AS rule, 'x' AS value "
                           "WHERE false", wd.rejects("dedup"), layer="rejected_documents")


def bench_config():
    """The demo's pipeline settings (topic rules, splits, floors) with one dump source, ``bench``,
    and 4 GB of DuckDB memory per stage."""
    text = demo_config_path().read_text(encoding="utf-8")
    head, rest = text.split("\nsources:\n", 1)
    rest = rest[rest.index("\npipeline:"):]
    OUT.mkdir(exist_ok=True)
    path = OUT / "bench-sources.yaml"
    # the release's split assignment at 1M documents hit DuckDB's default 2 GB once (out of memory)
    rest = rest.replace("\npipeline:\n", "\npipeline:\n  memory_limit: 4GB\n", 1)
    path.write_text(f"{head}\nsources:\n  - name: {SOURCE}\n    kind: jsonl\n{rest}", encoding="utf-8")
    return load_config(path)


def run_stages(cfg, wd: Workdir) -> dict[str, float]:
    from dataset_platform.release.materialise import materialise_release
    from dataset_platform.runner import materialise, materialise_rejected

    times = {}
    for stage, layer in (("label", "labelled_documents"), ("decontaminate", "decontaminated_documents")):
        t0 = time.perf_counter()
        materialise(stage, cfg, wd)
        times[layer] = time.perf_counter() - t0
    t0 = time.perf_counter()
    materialise_rejected(cfg, wd)
    times["rejected_documents"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    materialise_release(cfg, wd)
    times["dataset_release"] = time.perf_counter() - t0
    return times


# ------------------------------------------------------------------ the checks


def checks(cfg, wd: Workdir, full_build: bool) -> list[tuple[str, str, callable]]:
    """(layer, check, thunk) of every check, calling the logic defs/quality.py calls."""
    from dataset_platform.checks import invariants as inv
    from dataset_platform.release.materialise import current_release
    from dataset_platform.stages.registry import STAGES

    suites = REPO / "expectations"
    out = []
    try:
        from dataset_platform.checks.suite_check import run_suite_check  # the incremental check
    except ImportError:
        run_suite_check = None
    for layer in ("raw_pages", "crawl_log", "extracted_documents", "cleaned_documents", "deduplicated_documents",
                  "labelled_documents", "decontaminated_documents", "rejected_documents", "dataset_release"):
        if run_suite_check is not None:
            out.append((layer, "gx_suite", lambda layer=layer: run_suite_check(cfg, wd, layer, suites / f"{layer}.json")))
        else:
            out.append((layer, "gx_suite", lambda layer=layer: _whole_suite(cfg, wd, layer, suites / f"{layer}.json")))
    for st in STAGES:
        if st.name == "dedup" or st.output in DIRECT or st.name in ("label", "decontaminate"):
            out.append((st.output, "accounting", lambda st=st: inv.accounting_outcome(wd, st)))
    out.append(("raw_pages", "reconciles_with_crawl_log", lambda: inv.raw_reconciles_with_crawl_log(wd)))
    if hasattr(inv, "structured_pii_check"):
        out.append(("cleaned_documents", "no_structured_pii", lambda: inv.structured_pii_check(wd)))
    else:  # before the ledger: the parts of the last commit (on a full build: every part)
        from dataset_platform.storage import count_layer

        files = wd.layer_files("cleaned_documents") if full_build else inv.new_files(wd, "cleaned_documents")
        out.append(("cleaned_documents", "no_structured_pii", lambda: inv.no_structured_pii(
            files, scanned_of=count_layer(None, wd, "cleaned_documents"))))

    def rel():
        return current_release(cfg, wd)

    out.append(("dataset_release", "reconciles_with_crawl", lambda: inv.release_reconciles_with_crawl(wd, rel())))
    out.append(("dataset_release", "no_split_leakage", lambda: inv.split_leakage(wd, rel())))
    out.append(("dataset_release", "split_balance", lambda: inv.split_shares(rel(), cfg.pipeline.splits.stratify_by)))
    out.append(("dataset_release", "diversity_and_balance",
                lambda: inv.release_diversity(rel(), cfg.label_set_names, cfg.pipeline.quality)))
    return out


def _whole_suite(cfg, wd: Workdir, layer: str, suite: Path):
    """What the gx_suite check did before it validated new parts only: the whole table."""
    from dataset_platform.checks.gx_suites import validate_relation
    from dataset_platform.release.materialise import current_release
    from dataset_platform.release.publish import release_view_sql
    from dataset_platform.runner import rejected_sql
    from dataset_platform.storage import read_layer

    if layer == "dataset_release":
        sql = f"SELECT * FROM {release_view_sql(current_release(cfg, wd))}"
    elif layer == "rejected_documents":
        sql = f"SELECT * FROM {rejected_sql(wd)}"
    else:
        sql = f"SELECT * FROM {read_layer(wd, layer)}"
    con = memory_connection()
    try:
        return validate_relation(con, sql, suite, label_sets=cfg.label_values)
    finally:
        con.close()


def time_checks(cfg, wd: Workdir, full_build: bool) -> list[tuple[str, str, float, str]]:
    rows = []
    for layer, name, thunk in checks(cfg, wd, full_build):
        t0 = time.perf_counter()
        res = thunk()
        dt = time.perf_counter() - t0
        rows.append((layer, name, dt, _verdict(res)))
        print(f"  {layer}.{name}: {dt:.2f}s {_verdict(res)}", file=sys.stderr)
    return rows


def _verdict(res) -> str:
    outcome = getattr(res, "outcome", res)
    if hasattr(outcome, "critical_passed"):
        validated = getattr(outcome, "rows_validated", outcome.row_count)
        ok = outcome.critical_passed
        return f"{'pass' if ok else 'FAIL'}, {validated:,} of {outcome.row_count:,} rows validated by GX"
    if hasattr(outcome, "passed"):
        return "pass" if outcome.passed else f"FAIL {outcome.metadata}"
    return "measured"


# ------------------------------------------------------------------ main


def stage_time(layer: str, docs: int, measured: dict[str, float], *, refresh_rows: int | None) -> tuple[float, str]:
    """(seconds, where the figure comes from) of the stage writing ``layer``."""
    n = refresh_rows if refresh_rows is not None else docs
    if layer in measured:
        return measured[layer], "measured here"
    if layer in STAGE_RATES:
        stage, rate = STAGE_RATES[layer]
        return n / rate, f"BENCHMARKS.md {stage} {rate:.0f} docs/s x {n:,}"
    if layer == "deduplicated_documents":
        return (DEDUP_REFRESH_S if refresh_rows is not None else DEDUP_FULL_S), "BENCHMARKS.md dedup at 1M"
    if layer in ("raw_pages", "crawl_log"):
        return n / INGEST_RATE, f"BENCHMARKS.md WARC ingest {INGEST_RATE:.0f} records/s x {n:,}"
    return float("nan"), "?"


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--phase", choices=("all", "build", "checks", "fixed"), default="all")
    ap.add_argument("--out", type=Path, default=OUT, help="scratch folder (default bench/out)")
    ap.add_argument("--restage", action="store_true",
                    help="run the label, decontaminate and release stages again from nothing (their full-build "
                         "times are re-measured)")
    args = ap.parse_args()
    OUT = args.out
    if args.phase == "fixed":
        return fixed_costs()
    per_part = args.docs // args.parts
    OUT.mkdir(parents=True, exist_ok=True)
    wd = Workdir.at(OUT / f"gxwd-{args.docs}")
    cfg = bench_config()
    con = memory_connection()
    paragraphs_table(con)
    built = wd.root / "built.json"
    if not built.exists():
        if wd.root.exists():
            shutil.rmtree(wd.root)
        wd.ensure()
        t0 = time.perf_counter()
        land_batches(con, wd, 0, args.parts, per_part)
        print(f"layers written in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        full = run_stages(cfg, wd)
        built.write_text(json.dumps({"stages_full": full}))
    if args.restage:
        _undo_refresh(wd, args.parts, rerun=False)
        for name in ("labelled_documents", "decontaminated_documents", "split_assignments"):
            shutil.rmtree(wd.layer_dir(name), ignore_errors=True)
        shutil.rmtree(wd.releases, ignore_errors=True)
        built.write_text(json.dumps({"stages_full": run_stages(cfg, wd)}))
    full = json.loads(built.read_text())["stages_full"]
    if args.phase == "build":
        return
    _undo_refresh(wd, args.parts)
    shutil.rmtree(wd.root / "checks", ignore_errors=True)

    # GX's import and context set-up, paid once per process
    t0 = time.perf_counter()
    c2 = memory_connection()
    _warm(c2)
    c2.close()
    t_warm = time.perf_counter() - t0
    print(f"GX import + context + a first suite on 1 000 rows: {t_warm:.1f}s", file=sys.stderr)

    load_start = os.getloadavg()[0]
    print("full build:", file=sys.stderr)
    full_rows = time_checks(cfg, wd, True)
    mem_full = vm_hwm_mb()

    print("refresh (one new batch):", file=sys.stderr)
    land_batches(con, wd, args.parts, 1, per_part)
    refresh = run_stages(cfg, wd)
    refresh_rows = time_checks(cfg, wd, False)
    mem = vm_hwm_mb()

    print(f"machine: {machine()}; load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
          f"GX warm-up {t_warm:.1f}s; peak RSS {mem_full:.0f} MB full, {mem:.0f} MB refresh")
    print("| layer | check | full build s | stage s (full) | share | refresh s | stage s (refresh) | share | "
          "full build result | refresh result |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for (layer, name, t_f, v_f), (_, _, t_r, v_r) in zip(full_rows, refresh_rows):
        s_f, _src = stage_time(layer, args.docs, full, refresh_rows=None)
        s_r, _src = stage_time(layer, args.docs, refresh, refresh_rows=per_part)
        print(f"| {layer} | {name} | {t_f:.2f} | {s_f:.1f} | {t_f / s_f:.1%} | {t_r:.2f} | {s_r:.1f} | "
              f"{t_r / s_r:.1%} | {v_f} | {v_r} |")
    print("stage figures: " + "; ".join(f"{layer}: {stage_time(layer, args.docs, full, refresh_rows=None)[1]}"
                                         for layer in dict.fromkeys(r[0] for r in full_rows)))


def fixed_costs(repeat: int = 3) -> None:
    """A gx_suite check's fixed costs, each in a fresh process (medians of ``repeat``): importing
    GX, its context, building a suite, one GX run (Validator + metric graph) on 1 000 rows per
    suite, and one Data Docs page."""
    import statistics
    import subprocess

    code = r'''
import json, sys, time, tempfile
from pathlib import Path
t = time.perf_counter(); import great_expectations; t_import = time.perf_counter() - t
from dataset_platform.checks import gx_suites as g
from dataset_platform.checks.data_docs import build_data_docs
from dataset_platform.storage import memory_connection
t = time.perf_counter()
with g._GX_LOCK:
    g._batch_definition()
t_context = time.perf_counter() - t
from great_expectations.core import ExpectationSuite
out = {"import": t_import, "context": t_context}
con = memory_connection()
labels = {"topic": ["science", "sports", "business", "technology", "culture", "other"]}
for layer in sys.argv[1:]:
    suite = Path("expectations") / f"{layer}.json"
    spec = g.expand_label_sets(g.load_suite(suite), labels)
    row = [e for e in spec["expectations"] if e["type"] in g.BATCH_TYPES]
    t = time.perf_counter(); ExpectationSuite(name=layer, expectations=[
        {"type": e["type"], "kwargs": e["kwargs"], "severity": e["severity"]} for e in row]); t_suite = time.perf_counter() - t
    # 1 000 rows with the suite's columns (values need not pass: the cost is the same)
    cols = sorted({c for e in row for c in g.referenced_columns(e)})
    sql = "SELECT " + ", ".join(f"'x' || i AS \"{c}\"" for c in cols) + " FROM range(1000) t(i)"
    specs = dict(enumerate(row))
    t = time.perf_counter(); g._validate_batches(con, sql, cols, specs, suite, 10**6, 1 << 30, 1000)
    t_run = time.perf_counter() - t
    t = time.perf_counter(); g._validate_batches(con, sql, cols, specs, suite, 10**6, 1 << 30, 1000)
    t_run2 = time.perf_counter() - t
    outcome = g.SuiteOutcome(layer, 1000, [g._outcome(e, True, 1000, 0, [], "gx") for e in spec["expectations"]])
    d = Path(tempfile.mkdtemp())
    t = time.perf_counter(); build_data_docs(outcome, d, "r1"); t_docs = time.perf_counter() - t
    t = time.perf_counter(); build_data_docs(outcome, d, "r2"); t_docs2 = time.perf_counter() - t
    out[layer] = {"row_level": len(row), "suite": t_suite, "gx_run_first": t_run, "gx_run": t_run2,
                  "docs_first": t_docs, "docs": t_docs2}
print(json.dumps(out))
'''
    layers = ["crawl_log", "raw_pages", "cleaned_documents", "labelled_documents", "dataset_release"]
    runs = []
    for _ in range(repeat):
        p = subprocess.run([sys.executable, "-P", "-c", code, *layers], cwd=REPO, capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
        if p.returncode:
            raise SystemExit(p.stderr[-3000:])
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    med = lambda f: statistics.median(f(r) for r in runs)
    print(f"machine: {machine()}; medians of {repeat} fresh processes")
    print(f"import great_expectations: {med(lambda r: r['import']):.2f} s; ephemeral context + batch definition: "
          f"{med(lambda r: r['context']):.3f} s (once per process)")
    print("| suite | row-level expectations | suite object s | first GX run s | GX run s (per batch) | "
          "first Data Docs page s | Data Docs page s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for layer in layers:
        print(f"| {layer} | {runs[0][layer]['row_level']} | {med(lambda r, layer=layer: r[layer]['suite']):.3f} | "
              f"{med(lambda r, layer=layer: r[layer]['gx_run_first']):.2f} | {med(lambda r, layer=layer: r[layer]['gx_run']):.2f} | "
              f"{med(lambda r, layer=layer: r[layer]['docs_first']):.2f} | {med(lambda r, layer=layer: r[layer]['docs']):.2f} |")


def _warm(con) -> None:
    from dataset_platform.checks.gx_suites import validate_relation

    d = OUT / "warm"
    d.mkdir(exist_ok=True)
    (d / "s.json").write_text(json.dumps({"name": "warm", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}, "severity": "critical"}]}))
    validate_relation(con, "SELECT * FROM range(1000) t(id)", d / "s.json")


def _undo_refresh(wd: Workdir, parts: int, *, rerun: bool = True) -> None:
    """Remove the refresh's batch from every layer (the stages' layers are run again from them)."""
    b = batch_id(parts)
    f = wd.crawl_log_file(SOURCE, b)
    if not f.exists():
        return
    f.unlink()
    with BatchedLayer(wd.raw_source(SOURCE), f"raw_pages/{SOURCE}").locked() as raw:
        raw.drop(b)
        raw.commit(extra={**raw.extra, "merged": [m for m in raw.extra.get("merged", []) if m != b]})
    for name in DIRECT:
        with BatchedLayer(wd.layer_dir(name), name).locked() as bl:
            bl.drop(f"{SOURCE}/{b}")
            extra = dict(bl.extra)
            if "result" in extra:
                total = sum(p.rows for k, p in bl.parts.items() if k != f"{SOURCE}/{b}")
                extra["result"] = {**extra["result"], "input": total, "kept": total}
            bl.commit(extra=extra)
    if rerun:
        run_stages(bench_config(), wd)


if __name__ == "__main__":
    main()
