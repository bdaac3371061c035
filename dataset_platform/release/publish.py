"""Publishing: split Parquet shards, a dataset card, a manifest and a diff, as one versioned release.

Layout::

    <releases>/<dataset>/<version>/
        data/train-00000-of-00002.parquet   shards of at most ~max_shard_bytes of text each
        data/validation-00000-of-00001.parquet, data/test-00000-of-00001.parquet
        README.md                           Hugging Face dataset card (YAML header + account)
        manifest.json                       row counts, sha256 per file, config hash, lineage, diff counts,
                                            shards reused / written
        diff.parquet                        id, change (added | removed | changed), split before / after
        index.parquet                       one narrow row per released row (id, split, shard, row
                                            fingerprint, ...): what the next version compares with
    <releases>/<dataset>/LATEST             the newest version's name
    <releases>/<dataset>/.<version>.parts.parquet, .parts.json
                                            which input part each document came from, and their
                                            chains (run bookkeeping: not part of the version)

The version is derived from the content (``v`` + 12 hex of a sha256 over the data files and the
config hash), so the same inputs, config and history give the same version and byte-identical
files, and publishing it again is a no-op. A release is written into a temporary folder and
renamed into place only when complete: a run killed mid-way leaves the previous release untouched.

A new version costs what changed (``release/shards.py``): the split assignment reads narrow
columns only (ids, URLs, cluster and stratification keys); a shard of the previous version whose
documents are all still there, unchanged and in the same split is hard-linked, not rewritten (its
sha256 taken from the previous manifest); only new and changed documents, and the survivors of
shards that lost or changed a document, are written; the diff and the card's statistics come
from the index (ids and fingerprints), never from texts. Rows stream from Parquet in bounded
batches: memory does not grow with the texts of the corpus.

Splits come from ``release/split.py`` (groups, stability across refreshes, stratification); the
assignments of every release are kept (``split_assignments``) so a document never changes split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dataset_platform.config import AugmentSettings, DatasetSettings, ReleaseSettings, SplitSettings
from dataset_platform.contracts import schema
from dataset_platform.release import shards
from dataset_platform.release.shards import INDEX, SourcePart, sha256_file, shard_file  # noqa: F401  (callers)
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
    #: data files reused from the previous version / written, rows in each, small shards folded,
    #: documents fingerprinted because their part changed
    shards: dict = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def release_columns(label_sets: list[str] | tuple[str, ...] = ()) -> list[str]:
    return [c for c in schema.columns("dataset_release", label_sets) if c != "split"]


def release_view_sql(release_dir: Path) -> str:
    """FROM-able SQL reading all splits of a release with a ``split`` column (every column of the files)."""
    glob = sql_str(release_dir / "data" / "*.parquet")
    return (
        f"(SELECT * EXCLUDE (filename), regexp_extract(filename, '/data/([a-z]+)-[0-9]+-of-[0-9]+\\.parquet$', 1) AS split "
        f"FROM read_parquet({glob}, filename = true, union_by_name = true))"
    )


def release_profile_sql(release_dir: Path) -> str:
    """FROM-able SQL with what a profile of the release needs (``n_chars``, ``lang``, ``source``)
    without reading a text: the version's index (the release itself when it has none)."""
    index = release_dir / INDEX
    if index.exists():
        return f"(SELECT n_chars, lang, source FROM read_parquet({sql_str(index)}))"
    return release_view_sql(release_dir)


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


def _diff(con: duckdb.DuckDBPyConnection, index: Path, out: Path) -> dict[str, int]:
    """Added / removed / changed rows against the previous release (by id; changed: the row
    fingerprint or the split differs), from the two versions' indexes; written to ``diff.parquet``."""
    con.sql(f"""
        CREATE OR REPLACE TABLE _diff AS
        SELECT coalesce(n.id, o.id) AS id,
               CASE WHEN o.id IS NULL THEN 'added' WHEN n.id IS NULL THEN 'removed' ELSE 'changed' END AS change,
               o.split AS split_before, n.split AS split_after
        FROM (SELECT id, split, _fp FROM read_parquet({sql_str(index)})) n FULL OUTER JOIN _prev_basis o ON n.id = o.id
        WHERE o.id IS NULL OR n.id IS NULL OR n._fp <> o._fp OR n.split <> o.split
    """)
    write_parquet(con, "SELECT * FROM _diff ORDER BY id", out)
    counts = dict(con.sql("SELECT change, count(*) FROM _diff GROUP BY 1").fetchall())
    con.sql("DROP TABLE _diff")
    return {k: int(counts.get(k, 0)) for k in ("added", "removed", "changed")}


def publish_release(
    con: duckdb.DuckDBPyConnection,
    docs: str | list[SourcePart],
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
    augment: AugmentSettings | None = None,
    tasks=None,
    shard_folder: Path | None = None,
    log=None,
) -> ReleaseInfo:
    """Assign splits and publish a release of ``docs``.

    ``docs``: the parts of the input layer (:class:`~dataset_platform.release.shards.SourcePart`;
    a part with the chain the previous release consumed is not read again), or one FROM-able SQL
    relation (read whole).
    ``stats`` (optional, deterministic values only) feeds the dataset card: ``stages`` (list of
    [stage, in, kept, rejected]), ``reasons`` (list of [stage, rule, count]), ``sources``.
    ``previous_assignments_sql``: (id, split) of earlier releases, which documents keep.
    ``lineage``: upstream materialisations (goes into the manifest only, not into the version).
    ``augment``: augmentation settings (augmented copies of train documents), or None.
    ``tasks``, ``shard_folder``, ``log``: where the split's shard tasks run (``assign_splits``).
    After the call, tables ``split_docs`` (id, split, group_key: no texts) and
    ``split_assignments`` (the assignments to persist) are on ``con``.
    """
    parts = [SourcePart("", docs)] if isinstance(docs, str) else sorted(docs, key=lambda p: p.key)
    stats = dict(stats or {})
    dataset_dir = releases_root / dataset.name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_tmp(dataset_dir)
    cols = release_columns(label_sets)
    available = set(con.sql(f"SELECT * FROM {parts[0].sql} LIMIT 0").columns)
    keys = [c for c in ("id", "url", "cluster_id", "content_hash", splits.stratify_by) if c and c in available]
    keys = list(dict.fromkeys(keys))
    layout = shards.layout_of(label_sets, release.max_shard_bytes, augment, split_settings={
        "salt": splits.salt, "group_by": sorted(splits.group_by), "stratify_by": splits.stratify_by, "keys": keys})
    previous = latest_release(releases_root, dataset.name)
    prev = shards.load_previous(con, previous, layout, label_sets)
    shards.scan(con, parts, prev, keys)  # narrow columns only: no text goes through the assignment
    # groups by difference when the previous release knows them (release/split.py)
    last_run = shards.last_run_sql(prev, layout) if previous_assignments_sql is not None else None
    split_stats = assign_splits(con, "(SELECT " + ", ".join(f'"{k}"' for k in keys) + " FROM _docs)", splits,
                                previous_sql=previous_assignments_sql, last_run_sql=last_run, carry=False,
                                tasks=tasks, shard_folder=shard_folder, log=log)
    con.sql("DROP TABLE _prev_parts")
    fingerprinted = shards.fingerprint_unknown(con, parts, label_sets) if prev.reusable else 0
    the_plan = shards.plan(con, prev, release.max_shard_bytes)
    prev_version = previous.name if previous is not None else None

    tmp = dataset_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (tmp / "data").mkdir(parents=True)
    try:
        written = shards.write(con, parts, prev, the_plan, tmp, label_sets, release.max_shard_bytes, augment)
        files = {k: v["sha256"] for k, v in sorted(written.files.items())}
        rows = written.rows
        digest = hashlib.sha256(
            json.dumps({"files": files, "config": config_fingerprint}, sort_keys=True).encode()
        ).hexdigest()
        version = "v" + digest[:12]
        diff = _diff(con, tmp / INDEX, tmp / "diff.parquet")
        shares = _shares(con, tmp / INDEX, label_sets)
        if augment is not None:
            stats["augmentation"] = _augmentation(con, tmp / INDEX)
        split_info = {
            "groups": split_stats.groups, "straddling_groups": split_stats.straddling_groups,
            "kept_from_previous": split_stats.kept_from_previous, "new": split_stats.new,
            "max_share_deviation": split_stats.max_share_deviation,
            "group_by": list(splits.group_by), "stratify_by": splits.stratify_by, "tolerance": splits.tolerance,
        }
        full_stats = {**stats, **shares, "split": split_info, "diff": diff, "previous_version": prev_version}
        shard_info = {"reused": written.reused, "written": written.written, "rows_reused": written.rows_reused,
                      "rows_written": written.rows_written, "folded": written.folded,
                      "fingerprinted": fingerprinted, "previous_reusable": prev.reusable,
                      "split_by_difference": last_run is not None, "split_recomputed": split_stats.recomputed}
        manifest = {
            "dataset": dataset.name,
            "version": version,
            "previous_version": prev_version,
            "config_sha256": config_fingerprint,
            "rows": rows,
            "total_rows": sum(rows.values()),
            "files": dict(sorted(written.files.items())),
            "columns": cols,
            "label_sets": list(label_sets),
            "split_ratios": {"train": splits.train, "validation": splits.validation, "test": splits.test},
            "diff": diff,
            "lineage": lineage or {},
            "stats": full_stats,
            "index": INDEX,
            "layout": layout,
            "shards": shard_info,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            dataset_card(dataset, version, rows, splits, full_stats, label_sets=label_sets,
                         max_shard_bytes=release.max_shard_bytes, files=written.files), encoding="utf-8")

        final = dataset_dir / version
        created = not final.exists()
        if created:
            os.rename(tmp, final)  # atomic on one filesystem: the release appears whole or not at all
        else:
            shutil.rmtree(tmp)
        # the run's bookkeeping (which input part each document came from), beside the version:
        # written again when the version already existed (its content is the same)
        shards.write_parts(con, dataset_dir, version, parts)
        _write_text_atomic(dataset_dir / "LATEST", version + "\n")
        return ReleaseInfo(dataset.name, version, final, rows, files, created, full_stats,
                           previous=prev_version, diff=diff, split_stats=split_stats, shards=shard_info)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _shares(con: duckdb.DuckDBPyConnection, index: Path, label_sets) -> dict:
    """Documents per split and label value, and per split and language (augmented copies
    included), from the index."""
    def counts(col: str) -> list[list]:
        return [list(r) for r in con.sql(
            f'SELECT split, "{col}", count(*) FROM read_parquet({sql_str(index)}) GROUP BY ALL ORDER BY 1, 2'
        ).fetchall()]

    return {"labels": {s: counts(s) for s in label_sets}, "languages": counts("lang")}


def _augmentation(con: duckdb.DuckDBPyConnection, index: Path) -> dict:
    """The release's augmented copies, and how many each operation changed (from the index)."""
    ((rows,),) = con.sql(f"SELECT count(*) FROM read_parquet({sql_str(index)}) WHERE augmented_from IS NOT NULL").fetchall()
    per_op = dict(con.sql(f"SELECT op, count(*) FROM (SELECT unnest(string_split(_ops, ',')) AS op "
                          f"FROM read_parquet({sql_str(index)}) WHERE _ops IS NOT NULL AND _ops <> '') "
                          "GROUP BY 1 ORDER BY 1").fetchall())
    return {"rows": int(rows), "operations": sorted(per_op), "per_operation": {k: int(v) for k, v in per_op.items()}}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


#: Hugging Face's ``size_categories`` values, by upper bound of the row count
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"))
#: language values of the rows that name no language (CLD2 found none)
NO_LANGUAGE = ("und", "")


def size_category(rows: int) -> str:
    """Hugging Face's ``size_categories`` value for a dataset of ``rows`` rows."""
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>1T")


def card_languages(stats: dict) -> list[str]:
    """The languages of the released rows (``stats["languages"]``: [split, lang, rows] from the
    index), sorted; rows without a language (``und``) name none."""
    return sorted({str(lang) for _split, lang, n in stats.get("languages", [])
                   if lang is not None and str(lang) not in NO_LANGUAGE and n})


def loadable_splits(rows: dict[str, int]) -> list[str]:
    """The splits the card offers to ``datasets``: those with rows (``datasets`` cannot build an
    empty split: "Instruction 'validation' corresponds to no data"); all when every one is empty.
    An empty split still has its (empty) file, for DuckDB and other readers of ``data/*.parquet``."""
    return [s for s in schema.SPLITS if rows.get(s)] or list(schema.SPLITS)


#: plain YAML scalars that YAML 1.1 readers (PyYAML) would not read as a string
_YAML_NOT_STR = re.compile(r"(?i)y|n|yes|no|on|off|true|false|null|inf|nan")


def _yaml_str(x: str) -> str:
    """``x`` as a YAML scalar that reads back as this string: plain when it is a simple word
    (``en``, ``cc-by-4.0``), quoted otherwise (``no`` is a boolean to YAML 1.1 readers)."""
    x = str(x)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", x) and not _YAML_NOT_STR.fullmatch(x):
        return x
    return json.dumps(x, ensure_ascii=False)


def card_header(dataset: DatasetSettings, rows: dict[str, int], stats: dict, files: dict[str, dict] | None) -> str:
    """The card's YAML metadata: licence, the languages and size category of the released rows,
    the ``default`` config's data files, and ``dataset_info`` as Hugging Face ``datasets`` reads it
    (``DatasetInfo._from_yaml_dict``: per split ``name``, ``num_bytes``, ``num_examples``, plus
    ``download_size`` and ``dataset_size``). ``num_bytes`` is what ``datasets`` computes when it
    loads the split (the Arrow size of the batches it reads: :func:`shards.arrow_bytes`, recorded
    per file in the manifest as ``arrow_bytes``); ``download_size`` is the bytes of the Parquet
    files. ``files``: the manifest's files (without them, sizes are left out)."""
    langs = card_languages(stats)
    lines = ["---", f"license: {_yaml_str(dataset.license)}"]
    if langs:
        lines += ["language:", *(f"- {_yaml_str(x)}" for x in langs)]
    lines += [f"pretty_name: {_yaml_str(dataset.name)}",
              "size_categories:", f"- {size_category(sum(rows.values()))}",
              "task_categories:", "- text-generation", "- text-classification",
              "configs:", "- config_name: default", "  data_files:"]
    for s in loadable_splits(rows):
        lines += [f"  - split: {s}", f"    path: data/{s}-*.parquet"]
    if files is not None:
        def of(split: str, key: str) -> int:
            return sum(int(m.get(key, 0)) for rel, m in files.items() if rel.startswith(f"data/{split}-"))

        lines += ["dataset_info:", "  config_name: default", "  splits:"]
        for s in loadable_splits(rows):
            lines += [f"  - name: {s}", f"    num_bytes: {of(s, 'arrow_bytes')}", f"    num_examples: {rows[s]}"]
        lines += [f"  download_size: {sum(of(s, 'bytes') for s in schema.SPLITS)}",
                  f"  dataset_size: {sum(of(s, 'arrow_bytes') for s in schema.SPLITS)}"]
    return "\n".join([*lines, "---"]) + "\n"


def dataset_card(
    dataset: DatasetSettings, version: str, rows: dict[str, int], splits: SplitSettings, stats: dict,
    *, label_sets: list[str] | tuple[str, ...] = (), max_shard_bytes: int | None = None,
    files: dict[str, dict] | None = None,
) -> str:
    """A Hugging Face dataset card: YAML header (:func:`card_header`: configs, splits, sizes,
    languages, licence) and a plain account of sources, filters, dedup, labelling,
    decontamination and known limits."""
    header = card_header(dataset, rows, stats, files)
    split_info = stats.get("split", {})
    groups = ", ".join(split_info.get("group_by", [])) or "document"
    parts = [
        header,
        f"# {dataset.name} ({version})\n",
        dataset.description + "\n",
        "## Loading\n",
        "```python\nfrom datasets import load_dataset\n"
        f"ds = load_dataset(\"parquet\", data_files={{s: f\"data/{{s}}-*.parquet\" for s in {tuple(loadable_splits(rows))!r}}})\n```\n",
        "or `load_dataset(\"<this folder>\")`, which reads this card's `configs` and checks the splits' sizes "
        "against its `dataset_info`; or with DuckDB: `SELECT * FROM read_parquet('data/*.parquet', filename = true)`.\n",
        "Each split is stored in shards (`data/<split>-NNNNN-of-NNNNN.parquet`)"
        + (f" of at most {max_shard_bytes / 2**20:g} MiB of text" if max_shard_bytes else "")
        + ". A new version reuses the previous version's shards whose documents did not change (the same "
        "files), writes new and changed documents, and the remaining documents of a shard that lost or changed "
        "one, into new shards, and folds small shards together; so rows are grouped by when they were "
        "published, not in id order, and a rebuild from scratch may cut the shards elsewhere (the rows of each "
        "split are the same). `index.parquet` lists every row's split, shard and fingerprint; `diff.parquet` "
        "what changed since the previous version.\n",
        "## Splits\n",
        _table(["split", "documents", "share of config"], [[s, rows[s], getattr(splits, s)] for s in schema.SPLITS]) + "\n",
        f"Documents that share a {groups} form one group, and a group is never divided between splits, so "
        "near-duplicates and pages of one URL cannot leak from train into test. A document keeps its split "
        "for good: a refresh only assigns new documents, hash-ordered within their stratum"
        + (f" of `{splits.stratify_by}`, so each split's label shares stay near the whole's (largest deviation "
           f"{_fmt(split_info.get('max_share_deviation'))}, tolerance {splits.tolerance})" if splits.stratify_by else "")
        + ".\n",
    ]
    if stats.get("languages"):
        parts += ["## Languages\n",
                  "The `lang` of each released row (CLD2; `und`: none identified), which the `language` field of "
                  "the header lists:\n",
                  _table(["split", "lang", "documents"], stats["languages"]) + "\n"]
    parts += [
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
    if stats.get("quality_model"):
        q = stats["quality_model"]
        parts += ["### Quality model\n",
                  f"Every cleaned document was scored by the quality model `{q.get('model_version')}` "
                  f"(`layers/scored_documents/models/{q.get('model_version')}.pkl`: hashed word 1-2-grams, TF-IDF, "
                  f"logistic regression; P(good)); below the threshold {q.get('threshold')} a document was "
                  + ("dropped (`rejected_documents`, rule `quality_model`)" if q.get("mode") == "drop"
                     else "kept and annotated `quality_model`")
                  + ". Training documents: " + (", ".join(f"{k} {v}" for k, v in sorted(q.get("train_rows", {}).items()))
                                                or "none") + ".\n"]
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
    if stats.get("takedowns"):
        parts += ["### Takedown requests honoured\n",
                  "Documents people or publishers asked to have removed, with their near-duplicates, are in no "
                  "layer and no release (`rejected_documents`, stage `takedown`, value the request id):\n",
                  _table(["request", "date", "kind", "target", "documents removed"], stats["takedowns"]) + "\n"]
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
