"""Metadata every materialisation carries in the UI."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg

from dataset_platform.checks.profile import bar, parts_profile_sql, profile
from dataset_platform.contracts import schema
from dataset_platform.contracts.descriptions import column_descriptions
from dataset_platform.runner import LayerResult
from dataset_platform.storage import query_connection
from dataset_platform.workdir import Workdir

#: significant digits a float keeps in the metadata the UI shows (never fewer than its integer part)
FLOAT_DIGITS = 4


def round_float(x: float, digits: int = FLOAT_DIGITS) -> float:
    """``x`` to ``digits`` significant digits, its integer part whole: 0.033333333333333326 -> 0.03333,
    1234.5678 -> 1235.0, 12.3456 -> 12.35. NaN and infinities stay as they are."""
    if not math.isfinite(x) or x == 0:
        return x
    return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x)))))


def _rounded(v):
    if isinstance(v, float):
        return round_float(v)
    if isinstance(v, dg.FloatMetadataValue) and v.value is not None:
        return dg.MetadataValue.float(round_float(v.value))
    if isinstance(v, dg.JsonMetadataValue):
        return dg.MetadataValue.json(_rounded(v.value))
    if type(v) is dict:  # (a plain JSON value; Dagster's metadata values are records)
        return {k: _rounded(x) for k, x in v.items()}
    if type(v) in (list, tuple):
        return type(v)(_rounded(x) for x in v)
    return v


def round_floats(md: dict) -> dict:
    """The metadata with every float (also in a JSON value) rounded by ``round_float``: what the UI
    shows, not the float noise of a computation. The data files are not touched."""
    return {k: _rounded(v) for k, v in md.items()}


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(c) -> str:
        return str(round_float(c)) if isinstance(c, float) else str(c)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


#: characters of a dataset card shown in the UI (the event log keeps every materialisation's metadata)
CARD_CHARS = 50_000


def card_markdown(path: Path) -> dg.MarkdownMetadataValue:
    """A release's dataset card as Markdown the UI renders: its YAML header as a code block (the UI
    would run it into one paragraph), then the card."""
    text = path.read_text(encoding="utf-8")
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        header, body = text[4:].split("\n---\n", 1)
        text = f"```yaml\n{header}\n```\n\n{body.lstrip()}"
    if len(text) > CARD_CHARS:
        text = text[:CARD_CHARS] + f"\n\n… (cut at {CARD_CHARS:,} characters: the whole card is {path})"
    return dg.MetadataValue.md(text)


def column_schema(layer: str, label_sets: list[str] | tuple[str, ...] = ()) -> dg.TableSchema:
    """The layer's columns, types and descriptions (the comments of ``contracts/schema.py``)."""
    described = column_descriptions(layer, label_sets)
    return dg.TableSchema(columns=[dg.TableColumn(n, t, description=described.get(n))
                                   for n, t in schema.layer_columns(layer, label_sets)])


def layer_metadata(result: LayerResult, *, label_sets: list[str] | tuple[str, ...] = ()) -> dict:
    md: dict = {
        "dagster/row_count": result.rows,
        "dagster/column_schema": column_schema(result.layer, label_sets),
        "path": dg.MetadataValue.path(str(result.path)),
        "duration_s": round(result.seconds, 3),
    }
    st = result.stage
    if st is not None:
        md.update({
            "input_rows": st.input_rows,  # of the whole layer (every part)
            "kept_rows": st.kept_rows,
            "rejected_rows": st.rejected_rows,
            "docs_per_s": round(result.docs_per_s, 1),
            "drop_reasons": dg.MetadataValue.md(
                md_table(["rule", "documents"], [[k, v] for k, v in sorted(st.reasons.items())]) if st.reasons else "none"
            ),
        })
        for k, v in st.extra.items():
            md[k] = v
    if result.counters.get("parts_computed") is not None:  # this run's work, part by part
        c = result.counters
        md.update({"parts_computed": c["parts_computed"], "parts_completed": c["parts_completed"],
                   "parts_unchanged": c["parts_reused"], "parts_resumed": c.get("parts_adopted", 0),
                   "parts_dropped": c["parts_dropped"], "rows_computed": c["rows_computed"]})
        if c.get("ray"):  # (pipeline.executor: ray) where the parts ran
            md.update({"ray_tasks": c["ray"]["tasks"], "ray_workers": c["ray"]["workers"],
                       "ray_nodes": c["ray"]["nodes"], "ray_peak_task_rss_mb": c["ray"]["peak_task_rss_mb"],
                       "ray_peak_task_held_mb": c["ray"].get("peak_task_held_mb", 0.0),
                       "ray_task_memory_mb": c["ray"]["task_memory_mb"]})
    if "text" in schema.columns(result.layer, label_sets) and result.path.is_dir():
        files = sorted(result.path.glob("*/*/data.parquet"))  # (a layer stored by batch)
        if files:  # the parts' lengths, languages and sources, cached per part (read once)
            con = query_connection()
            try:
                rel = parts_profile_sql(con, files, Workdir.at(result.path.parents[1]).profile_cache(result.layer))
            finally:
                con.close()
            md.update(profile_metadata(rel))
    return md


def _share_rows(counts: list[tuple[str, int]], total: int) -> list[list]:
    return [[v, n, f"{n / total:.1%}" if total else "-", bar(n / total if total else 0.0)] for v, n in counts]


def profile_metadata(relation_sql: str) -> dict:
    """Length histogram and language / source shares as small text-bar charts, plus numbers that
    the UI plots across materialisations (the asset's Plots tab)."""
    con = query_connection()
    try:
        p = profile(con, relation_sql)
    finally:
        con.close()
    md: dict = {
        "length_histogram": dg.MetadataValue.md(
            md_table(["characters", "documents", "share", ""], _share_rows(p.lengths, p.rows))
            + (f"\n\np10 / median / p90: {p.length_p10:,.0f} / {p.length_median:,.0f} / {p.length_p90:,.0f} characters"
               if p.length_median is not None else "")),
        "length_median_chars": float(p.length_median or 0.0),
    }
    if p.languages:
        md["language_shares"] = dg.MetadataValue.md(md_table(["language", "documents", "share", ""],
                                                             _share_rows(p.languages, p.rows)))
        md["languages"] = p.distinct_languages
    if p.sources:
        md["source_shares"] = dg.MetadataValue.md(md_table(["source", "documents", "share", ""],
                                                           _share_rows(p.sources, p.rows)))
        md["sources"] = p.distinct_sources
    return md


def cluster_metadata(extra: dict) -> dict:
    """Duplicate rates by source and the cluster-size histogram (keeper included) as tables."""
    rates = sorted((k.split(":", 1)[1], v) for k, v in extra.items() if k.startswith("duplicate_rate:"))
    sizes = sorted((int(k.split(":", 1)[1]), v) for k, v in extra.items() if k.startswith("clusters_of_size:"))
    return {
        "duplicate_rate_by_source": dg.MetadataValue.md(
            md_table(["source", "share of documents dropped as duplicates"], [[s, f"{r:.2%}"] for s, r in rates])
            if rates else "no documents"),
        "cluster_sizes": dg.MetadataValue.md(
            md_table(["documents in cluster", "clusters"], [[n, c] for n, c in sizes]) if sizes else "no clusters"),
        "near_duplicates": int(extra.get("near_duplicates", 0)),
        "exact_duplicates": int(extra.get("exact_duplicates", 0)),
    }


def label_metadata(result: LayerResult) -> dict:
    """Per label set: values by source (a table), and the review export."""
    extra = result.stage.extra if result.stage else {}
    finish = result.counters.get("finish") or {}
    rows: dict[tuple[str, str], int] = {}
    for k, v in extra.items():
        if ":" in k and not k.startswith(("kappa:",)) and "_source:" not in k and "_model" not in k:
            name, value = k.split(":", 1)
            rows[(name, value)] = int(v)
    sources = sorted((k.split("_source:", 1)[0], k.split("_source:", 1)[1], int(v))
                     for k, v in extra.items() if "_source:" in k)
    md: dict = {
        "label_values": dg.MetadataValue.md(
            md_table(["label set", "value", "documents"], [[a, b, n] for (a, b), n in sorted(rows.items())]) if rows else "none"),
        "label_sources": dg.MetadataValue.md(
            md_table(["label set", "source", "documents"], [list(r) for r in sources]) if sources else "none"),
        "review_tasks": int(finish.get("review_tasks", 0)),
    }
    if finish.get("export"):
        md["review_export"] = dg.MetadataValue.path(finish["export"])
    for k, v in sorted(result.counters.get("prepared", {}).items()):
        if k.endswith("_model_train_rows"):
            md[k] = int(v)
    return md


def _dedup(result: LayerResult, cfg) -> dict:
    extra = result.stage.extra if result.stage else {}
    clusters = result.stage.rejected_rows if result.stage else 0
    return {"deduplicated_documents": cluster_metadata(extra),
            "duplicate_clusters": {"dagster/row_count": clusters,
                                   "dagster/column_schema": column_schema("duplicate_clusters"),
                                   "clusters": int(extra.get("clusters", 0)), **cluster_metadata(extra)}}


def _label(result: LayerResult, cfg) -> dict:
    prepared = result.counters.get("prepared", {})
    agreement = prepared.get("agreement", {})
    return {"labelled_documents": label_metadata(result),
            "human_annotations": {
                "dagster/row_count": int(prepared.get("human_annotations", 0)),
                "dagster/column_schema": column_schema("human_annotations"),
                "files": ", ".join(prepared.get("annotation_files", [])) or "none yet",
                "agreement": dg.MetadataValue.md(md_table(
                    ["label set", "method", "kappa", "documents", "annotators"],
                    [[k, v.get("method"), v.get("kappa"), v.get("items"), v.get("annotators")]
                     for k, v in sorted(agreement.items())])
                    if agreement else "no document has two annotators yet")}}


def _decontaminate(result: LayerResult, cfg) -> dict:
    items = result.counters.get("prepared", {})
    extra = result.stage.extra if result.stage else {}
    rows = [[k.split(":", 1)[1], int(v), int(extra.get("matched:" + k.split(":", 1)[1], 0))]
            for k, v in sorted(items.items()) if k.startswith("items:")]
    return {"decontaminated_documents": {"benchmarks": dg.MetadataValue.md(
        md_table(["evaluation set", "items", "documents removed"], rows) if rows else "no evaluation sets configured")}}


def _quality_model(result: LayerResult, cfg) -> dict:
    """The quality model's version and threshold, and the score histogram of the layer as a text-bar
    chart (``quality_score_bins``: the counts the score_distribution_stable check compares)."""
    prepared, finish = result.counters.get("prepared", {}), result.counters.get("finish", {})
    md = {"model_version": prepared.get("model_version") or "none (no training data: documents pass unscored)",
          "quality_threshold": float(cfg.pipeline.quality_model.threshold)}
    bins = finish.get("score_bins") or []
    total = sum(bins)
    if total:
        width = 1 / len(bins)
        md["quality_score_histogram"] = dg.MetadataValue.md(md_table(
            ["quality_score", "documents", "share", ""],
            [[f"{i * width:.1f}-{(i + 1) * width:.1f}", n, f"{n / total:.1%}", bar(n / total)]
             for i, n in enumerate(bins)]))
        md["quality_score_bins"] = dg.MetadataValue.json(bins)
        md["quality_score_mean"] = float(finish.get("mean_score", 0.0))
        md["below_threshold_share"] = finish.get("below_threshold", 0) / total
    if finish.get("export"):
        md["quality_review_export"] = dg.MetadataValue.path(finish["export"])
    return {"scored_documents": md}


#: stage name -> (result, config) -> {asset: further metadata}
STAGE_METADATA = {"quality_model": _quality_model, "dedup": _dedup, "label": _label, "decontaminate": _decontaminate}
