"""Publishing: split Parquet shards, a dataset card, a manifest and a diff, as one versioned release.

Layout::

    <releases>/<dataset>/<version>/
        data/train-00000-of-00002.parquet   shards of at most ~max_shard_bytes of text each
        data/validation-00000-of-00001.parquet, data/test-00000-of-00001.parquet
        README.md                           Hugging Face dataset card (YAML header + account)
        manifest.json                       row counts, sha256 per file, config hash, lineage, diff counts
        diff.parquet                        id, change (added | removed | changed), split before / after
    <releases>/<dataset>/LATEST             the newest version's name

The version is derived from the content (``v`` + 12 hex of a sha256 over the data files and the
config hash), so the same inputs and config give the same version and byte-identical data files,
and publishing it again is a no-op. A release is written into a temporary folder and renamed into
place only when complete: a run killed mid-way leaves the previous release untouched.

Splits come from ``release/split.py`` (groups, stability across refreshes, stratification); the
assignments of every release are kept (``split_assignments``) so a document never changes split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dataset_platform.contracts import schema
from dataset_platform.config import DatasetSettings, ReleaseSettings, SplitSettings
from dataset_platform.release.split import assign_splits
from dataset_platform.storage import sql_str, write_parquet

DEFAULT_RELEASE = ReleaseSettings()


@dataclass
class ReleaseInfo:
    dataset: str
    version: str
    path: Path
    rows: dict[str, int]
    files: dict[str, str]  # relative path -> sha256
    created: bool  # False when this exact version already existed
    stats: dict = field(default_factory=dict)
    previous: str | None = None  # the version LATEST named before this publish
    diff: dict[str, int] = field(default_factory=dict)  # added / removed / changed documents
    split_stats: object | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shard_file(split: str, i: int, n: int) -> str:
    return f"data/{split}-{i:05d}-of-{n:05d}.parquet"


def release_columns(label_sets: list[str] | tuple[str, ...] = ()) -> list[str]:
    return [c for c in schema.columns("dataset_release", label_sets) if c != "split"]


def release_view_sql(release_dir: Path) -> str:
    """FROM-able SQL reading all splits of a release with a ``split`` column (every column of the files)."""
    glob = sql_str(release_dir / "data" / "*.parquet")
    return (
        f"(SELECT * EXCLUDE (filename), regexp_extract(filename, '/data/([a-z]+)-[0-9]+-of-[0-9]+\\.parquet$', 1) AS split "
        f"FROM read_parquet({glob}, filename = true, union_by_name = true))"
    )


def _clear_stale_tmp(dataset_dir: Path) -> None:
    for tmp in dataset_dir.glob(".tmp-*"):
        try:
            pid = int(tmp.name.split("-")[1])
            os.kill(pid, 0)
            continue  # its writer is alive
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def latest_release(releases_root: Path, dataset: str) -> Path | None:
    pointer = releases_root / dataset / "LATEST"
    if not pointer.exists():
        return None
    d = releases_root / dataset / pointer.read_text(encoding="utf-8").strip()
    return d if d.is_dir() else None


def _pack(lengths, max_bytes: int) -> list[int]:
    """Shard number of each document (in order): a shard is closed when the next document would
    take it past ``max_bytes`` (a document larger than the bound gets a shard of its own)."""
    shards, shard, fill = [], 0, 0
    for n in lengths:  # one integer per document: the texts themselves stay in DuckDB
        if fill and fill + n > max_bytes:
            shard, fill = shard + 1, 0
        fill += n
        shards.append(shard)
    return shards


def _write_shards(con: duckdb.DuckDBPyConnection, tmp: Path, cols: list[str], max_bytes: int) -> tuple[dict, dict]:
    """Each split into contiguous id ranges holding at most ``max_bytes`` of text and title;
    returns rows per split and sha256 per file."""
    import pyarrow as pa

    con.sql("""
        CREATE OR REPLACE TABLE _lens AS
        SELECT split, id, strlen(coalesce(text, '')) + strlen(coalesce(title, '')) AS n
        FROM split_docs ORDER BY split, id
    """)
    splits = con.sql("SELECT split, n FROM _lens").to_arrow_table()
    shard_of: list[int] = []
    counts: dict[str, int] = {}
    names, lens = splits.column(0).to_pylist(), splits.column(1).to_pylist()
    start = 0
    while start < len(names):
        end = start
        while end < len(names) and names[end] == names[start]:
            end += 1
        packed = _pack(lens[start:end], max_bytes)
        shard_of += packed
        counts[names[start]] = packed[-1] + 1
        start = end
    con.register("_shard_arrow", pa.table({"_shard": pa.array(shard_of, pa.int64())}))
    con.sql("CREATE OR REPLACE TABLE _shard_ids AS SELECT l.id, s._shard FROM _lens l POSITIONAL JOIN _shard_arrow s")
    con.unregister("_shard_arrow")
    select = ", ".join(f'd."{c}"' for c in cols)
    rows: dict[str, int] = {}
    files: dict[str, str] = {}
    for split in schema.SPLITS:
        n = counts.get(split, 1)  # an empty split still gets its (empty) file: loaders expect every split
        rows[split] = 0
        for i in range(n):
            rel = shard_file(split, i, n)
            rows[split] += write_parquet(
                con, f"SELECT {select} FROM split_docs d JOIN _shard_ids s USING (id) "
                     f"WHERE d.split = {sql_str(split)} AND s._shard = {i} ORDER BY d.id",
                tmp / rel)
            files[rel] = sha256_file(tmp / rel)
    return rows, files


def _diff(con: duckdb.DuckDBPyConnection, previous: Path | None, cols: list[str], out: Path) -> dict[str, int]:
    """Added / removed / changed documents against the previous release (by id; changed: any
    released field differs, the split included), written to ``diff.parquet``."""
    content = " || '\x1f' || ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '\x00')" for c in [*cols, "split"] if c != "id")
    if previous is not None:
        prev_cols = set(con.sql(f"SELECT * FROM {release_view_sql(previous)} LIMIT 0").columns)
        prev_content = " || '\x1f' || ".join(
            f"coalesce(CAST(\"{c}\" AS VARCHAR), '\x00')" if c in prev_cols else "'\x00'" for c in [*cols, "split"] if c != "id")
        old = f"(SELECT id, split, md5({prev_content}) AS h FROM {release_view_sql(previous)})"
    else:
        old = "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS split, NULL::VARCHAR AS h WHERE false)"
    con.sql(f"""
        CREATE OR REPLACE TABLE _diff AS
        WITH new AS (SELECT id, split, md5({content}) AS h FROM split_docs)
        SELECT coalesce(n.id, o.id) AS id,
               CASE WHEN o.id IS NULL THEN 'added' WHEN n.id IS NULL THEN 'removed' ELSE 'changed' END AS change,
               o.split AS split_before, n.split AS split_after
        FROM new n FULL OUTER JOIN {old} o ON n.id = o.id
        WHERE o.id IS NULL OR n.id IS NULL OR n.h <> o.h
        ORDER BY 1
    """)
    write_parquet(con, "SELECT * FROM _diff ORDER BY id", out)
    counts = dict(con.sql("SELECT change, count(*) FROM _diff GROUP BY 1").fetchall())
    return {k: int(counts.get(k, 0)) for k in ("added", "removed", "changed")}


def publish_release(
    con: duckdb.DuckDBPyConnection,
    docs_sql: str,
    releases_root: Path,
    dataset: DatasetSettings,
    splits: SplitSettings,
    *,
    config_fingerprint: str,
    stats: dict | None = None,
    label_sets: list[str] | tuple[str, ...] = (),
    release: ReleaseSettings = DEFAULT_RELEASE,
    previous_assignments_sql: str | None = None,
    lineage: dict | None = None,
    augment=None,
) -> ReleaseInfo:
    """Assign splits and publish a release of ``docs_sql``.

    ``stats`` (optional, deterministic values only) feeds the dataset card: ``stages`` (list of
    [stage, in, kept, rejected]), ``reasons`` (list of [stage, rule, count]), ``sources``.
    ``previous_assignments_sql``: (id, split) of earlier releases, which documents keep.
    ``lineage``: upstream materialisations (goes into the manifest only, not into the version).
    ``augment``: optional callable(con) adding augmented train rows to ``split_docs``.
    After the call, table ``split_assignments`` on ``con`` holds the assignments to persist.
    """
    stats = dict(stats or {})
    dataset_dir = releases_root / dataset.name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_tmp(dataset_dir)
    split_stats = assign_splits(con, docs_sql, splits, previous_sql=previous_assignments_sql)
    cols = release_columns(label_sets)
    have = set(con.sql("SELECT * FROM split_docs LIMIT 0").columns)
    if "augmented_from" not in have:
        con.sql("CREATE OR REPLACE TABLE split_docs AS SELECT *, NULL::VARCHAR AS augmented_from FROM split_docs ORDER BY id")
    if augment is not None:
        stats["augmentation"] = augment(con)
    previous = latest_release(releases_root, dataset.name)

    tmp = dataset_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (tmp / "data").mkdir(parents=True)
    try:
        rows, files = _write_shards(con, tmp, cols, release.max_shard_bytes)
        digest = hashlib.sha256(
            json.dumps({"files": files, "config": config_fingerprint}, sort_keys=True).encode()
        ).hexdigest()
        version = "v" + digest[:12]
        prev_version = previous.name if previous is not None else None
        diff = _diff(con, previous, cols, tmp / "diff.parquet")
        shares = _shares(con, label_sets)
        split_info = {
            "groups": split_stats.groups, "straddling_groups": split_stats.straddling_groups,
            "kept_from_previous": split_stats.kept_from_previous, "new": split_stats.new,
            "max_share_deviation": split_stats.max_share_deviation,
            "group_by": list(splits.group_by), "stratify_by": splits.stratify_by, "tolerance": splits.tolerance,
        }
        full_stats = {**stats, **shares, "split": split_info, "diff": diff, "previous_version": prev_version}
        manifest = {
            "dataset": dataset.name,
            "version": version,
            "previous_version": prev_version,
            "config_sha256": config_fingerprint,
            "rows": rows,
            "total_rows": sum(rows.values()),
            "files": {k: {"sha256": v, "rows": _rows_of(con, tmp / k), "bytes": (tmp / k).stat().st_size}
                      for k, v in sorted(files.items())},
            "columns": cols,
            "label_sets": list(label_sets),
            "split_ratios": {"train": splits.train, "validation": splits.validation, "test": splits.test},
            "diff": diff,
            "lineage": lineage or {},
            "stats": full_stats,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            dataset_card(dataset, version, rows, splits, full_stats, label_sets=label_sets), encoding="utf-8")

        final = dataset_dir / version
        created = not final.exists()
        if created:
            os.rename(tmp, final)  # atomic on one filesystem: the release appears whole or not at all
        else:
            shutil.rmtree(tmp)
        _write_text_atomic(dataset_dir / "LATEST", version + "\n")
        return ReleaseInfo(dataset.name, version, final, rows, files, created, full_stats,
                           previous=prev_version, diff=diff, split_stats=split_stats)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _rows_of(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    return int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(path)})").fetchall()[0][0])


def _shares(con: duckdb.DuckDBPyConnection, label_sets) -> dict:
    def counts(col: str) -> list[list]:
        return [list(r) for r in con.sql(
            f'SELECT split, "{col}", count(*) FROM split_docs GROUP BY ALL ORDER BY 1, 2'
        ).fetchall()]

    return {"labels": {s: counts(s) for s in label_sets}, "languages": counts("lang")}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def dataset_card(
    dataset: DatasetSettings, version: str, rows: dict[str, int], splits: SplitSettings, stats: dict,
    *, label_sets: list[str] | tuple[str, ...] = (),
) -> str:
    """A Hugging Face dataset card: YAML header (configs, splits, sizes, licence) and a plain account
    of sources, filters, dedup, labelling, decontamination and known limits."""
    total = sum(rows.values())
    size_cat = "n<1K" if total < 1000 else "1K<n<10K" if total < 10_000 else "10K<n<100K" if total < 100_000 else "100K<n<1M" if total < 1_000_000 else "n>1M"
    langs = "\n".join(f"- {x}" for x in dataset.language)
    split_yaml = "\n".join(f"  - split: {s}\n    path: data/{s}-*.parquet" for s in schema.SPLITS)
    info_yaml = "\n".join(f"  - name: {s}\n    num_examples: {rows[s]}" for s in schema.SPLITS)
    header = (
        "---\n"
        f"license: {dataset.license}\n"
        f"language:\n{langs}\n"
        f"pretty_name: {dataset.name}\n"
        f"size_categories:\n- {size_cat}\n"
        "task_categories:\n- text-generation\n- text-classification\n"
        "configs:\n- config_name: default\n  data_files:\n"
        f"{split_yaml}\n"
        "dataset_info:\n  splits:\n"
        f"{info_yaml}\n"
        "---\n"
    )
    split_info = stats.get("split", {})
    groups = ", ".join(split_info.get("group_by", [])) or "document"
    parts = [
        header,
        f"# {dataset.name} ({version})\n",
        dataset.description + "\n",
        "## Loading\n",
        "```python\nfrom datasets import load_dataset\n"
        "ds = load_dataset(\"parquet\", data_files={s: f\"data/{s}-*.parquet\" for s in (\"train\", \"validation\", \"test\")})\n```\n",
        "or with DuckDB: `SELECT * FROM read_parquet('data/*.parquet', filename = true)`.\n",
        "## Splits\n",
        _table(["split", "documents", "share of config"], [[s, rows[s], getattr(splits, s)] for s in schema.SPLITS]) + "\n",
        f"Documents that share a {groups} form one group, and a group is never divided between splits, so "
        "near-duplicates and pages of one URL cannot leak from train into test. A document keeps its split "
        "for good: a refresh only assigns new documents, hash-ordered within their stratum"
        + (f" of `{splits.stratify_by}`, so each split's label shares stay near the whole's (largest deviation "
           f"{_fmt(split_info.get('max_share_deviation'))}, tolerance {splits.tolerance})" if splits.stratify_by else "")
        + ".\n",
        "## Fields\n",
        _table(["field", "type"], [[n, t] for n, t in schema.layer_columns("dataset_release", label_sets) if n != "split"]) + "\n",
    ]
    if stats.get("sources"):
        parts += ["## Sources\n", "\n".join(f"- {s}" for s in stats["sources"]) + "\n"]
    if stats.get("stages"):
        parts += [
            "## How it was made\n",
            "Pages were crawled, their main text extracted (trafilatura, resiliparse when trafilatura finds "
            "nothing) and language identified (CLD2); text was normalised (ftfy encoding repair, NFC, whitespace), "
            "documents failing the Gopher, C4 and FineWeb quality rules (language-aware; jieba words for Chinese) "
            "were dropped, e-mail addresses, phone numbers, IP addresses, payment cards, IBANs and Chinese ID "
            "numbers were replaced by `<EMAIL>`, `<PHONE>`, `<IP_ADDRESS>`, `<CARD>`, `<IBAN>` and `<CN_ID>`. "
            "Exact duplicates (same normalised text or URL) and near-duplicates (MinHash-LSH over word 5-grams, "
            "character 5-grams for Chinese, verified Jaccard) were removed keeping one document per cluster.\n",
            _table(["stage", "in", "kept", "rejected"], stats["stages"]) + "\n",
        ]
    if label_sets:
        parts += [
            "### Labels\n",
            "Each label set has three columns: the value, its source and a confidence. Labelling rules "
            "(keywords, patterns, URL and domain rules) vote; a classifier (TF-IDF and a calibrated linear SVM) "
            "trained on gold and human labels adds its prediction when there are any; resolved human labels from "
            "Label Studio override both (`human`). `default` means nothing labelled the document.\n",
        ]
        for name in label_sets:
            rows_l = stats.get("labels", {}).get(name)
            if rows_l:
                parts += [_table(["split", name, "documents"], rows_l) + "\n"]
        if stats.get("agreement"):
            parts += ["Agreement between annotators:\n",
                      _table(["label set", "method", "kappa", "documents", "annotators"],
                             [[k, v.get("method"), v.get("kappa"), v.get("items"), v.get("annotators")]
                              for k, v in sorted(stats["agreement"].items())]) + "\n"]
    if stats.get("decontamination"):
        d = stats["decontamination"]
        parts += [
            "### Decontamination\n",
            f"Documents sharing a {d.get('ngram', 13)}-gram of words ({d.get('cjk_ngram', 13)} characters for "
            "Chinese and Japanese) with an item of these evaluation sets were removed (`rejected_documents`, "
            "rule `benchmark_overlap`, with the item):\n",
            _table(["evaluation set", "items", "documents removed"], d.get("benchmarks", [])) + "\n",
        ]
    if stats.get("reasons"):
        parts += ["### Why documents were dropped\n", _table(["stage", "rule", "documents"], stats["reasons"]) + "\n"]
    if stats.get("augmentation"):
        a = stats["augmentation"]
        parts += ["### Augmentation\n",
                  f"{a.get('rows', 0)} augmented copies of train documents ({', '.join(a.get('operations', []))}); "
                  "`augmented_from` names the original. Validation and test hold none.\n"]
    if stats.get("diff") is not None:
        d = stats["diff"]
        parts += ["## Changes\n",
                  f"Against {stats.get('previous_version') or 'nothing (first release)'}: {d.get('added', 0)} documents "
                  f"added, {d.get('removed', 0)} removed, {d.get('changed', 0)} changed (`diff.parquet`).\n"]
    limits = [
        "- PII redaction covers structured identifiers only (e-mail, phone, IP, payment card, IBAN, Chinese ID "
        "number); names and postal addresses are not redacted.\n",
        "- Near-duplicate detection is probabilistic (MinHash-LSH): some pairs near the similarity threshold are "
        "missed or kept.\n",
    ]
    if label_sets:
        limits.append("- Labels with source `rule`, `model` or `default` were not reviewed by people; see the "
                      "confidence column.\n")
    if not stats.get("decontamination", {}).get("benchmarks"):
        limits.append("- No decontamination against evaluation benchmarks was configured.\n")
    parts += ["## Known limits\n", "".join(limits)]
    return "\n".join(parts)
