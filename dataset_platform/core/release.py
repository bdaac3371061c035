"""Publishing: split Parquet files, a dataset card and a manifest, as one versioned release.

Layout::

    <releases>/<dataset>/<version>/
        data/train-00000-of-00001.parquet   (likewise validation, test)
        README.md                           Hugging Face dataset card (YAML header + account)
        manifest.json                       row counts, sha256 per file, config hash
    <releases>/<dataset>/LATEST             the newest version's name

The version is derived from the content (``v`` + 12 hex of a sha256 over the data files and the
config hash), so the same inputs and config give the same version and byte-identical files, and
publishing it again is a no-op. A release is written into a temporary folder and renamed into
place only when complete: a run killed mid-way leaves the previous release untouched.
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

from dataset_platform import schema
from dataset_platform.config import DatasetSettings, SplitSettings
from dataset_platform.core.split import assign_splits
from dataset_platform.storage import sql_str, write_parquet

RELEASE_COLUMNS = [c for c in schema.columns("dataset_release") if c != "split"]


@dataclass
class ReleaseInfo:
    dataset: str
    version: str
    path: Path
    rows: dict[str, int]
    files: dict[str, str]  # relative path -> sha256
    created: bool  # False when this exact version already existed
    stats: dict = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_file(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def release_view_sql(release_dir: Path) -> str:
    """FROM-able SQL reading all splits of a release with a ``split`` column."""
    glob = sql_str(release_dir / "data" / "*.parquet")
    cols = ", ".join(f'"{c}"' for c in RELEASE_COLUMNS)
    return (
        f"(SELECT {cols}, regexp_extract(filename, '/data/([a-z]+)-[0-9]+-of-[0-9]+\\.parquet$', 1) AS split "
        f"FROM read_parquet({glob}, filename = true))"
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


def publish_release(
    con: duckdb.DuckDBPyConnection,
    labelled_sql: str,
    releases_root: Path,
    dataset: DatasetSettings,
    splits: SplitSettings,
    *,
    config_fingerprint: str,
    stats: dict | None = None,
) -> ReleaseInfo:
    """Assign splits and publish a release of ``labelled_sql``.

    ``stats`` (optional, deterministic values only) feeds the dataset card: ``stages`` (list of
    [stage, in, kept, rejected]), ``reasons`` (list of [stage, rule, count]), ``sources``.
    """
    stats = stats or {}
    dataset_dir = releases_root / dataset.name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_tmp(dataset_dir)
    assign_splits(con, labelled_sql, splits)

    tmp = dataset_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (tmp / "data").mkdir(parents=True)
    try:
        rows: dict[str, int] = {}
        files: dict[str, str] = {}
        cols = ", ".join(f'"{c}"' for c in RELEASE_COLUMNS)
        for split in schema.SPLITS:
            rel = split_file(split)
            rows[split] = write_parquet(
                con, f"SELECT {cols} FROM split_docs WHERE split = {sql_str(split)} ORDER BY id", tmp / rel
            )
            files[rel] = sha256_file(tmp / rel)
        digest = hashlib.sha256(
            json.dumps({"files": files, "config": config_fingerprint}, sort_keys=True).encode()
        ).hexdigest()
        version = "v" + digest[:12]
        shares = _shares(con)
        manifest = {
            "dataset": dataset.name,
            "version": version,
            "config_sha256": config_fingerprint,
            "rows": rows,
            "total_rows": sum(rows.values()),
            "files": {k: {"sha256": v, "rows": rows[k.split("/")[1].split("-")[0]]} for k, v in files.items()},
            "columns": RELEASE_COLUMNS,
            "split_ratios": {"train": splits.train, "validation": splits.validation, "test": splits.test},
            "stats": {**stats, **shares},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(dataset_card(dataset, version, rows, splits, {**stats, **shares}), encoding="utf-8")

        final = dataset_dir / version
        created = not final.exists()
        if created:
            os.rename(tmp, final)  # atomic on one filesystem: the release appears whole or not at all
        else:
            shutil.rmtree(tmp)
        _write_text_atomic(dataset_dir / "LATEST", version + "\n")
        return ReleaseInfo(dataset.name, version, final, rows, files, created, {**stats, **shares})
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _shares(con: duckdb.DuckDBPyConnection) -> dict:
    def counts(col: str) -> list[list]:
        return [list(r) for r in con.sql(
            f"SELECT split, {col}, count(*) FROM split_docs GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()]

    return {"topics": counts("topic"), "languages": counts("lang")}


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def dataset_card(dataset: DatasetSettings, version: str, rows: dict[str, int], splits: SplitSettings, stats: dict) -> str:
    """A Hugging Face dataset card: YAML header (configs, splits, sizes, licence) and a plain account."""
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
        "Each document's split is a stable hash of its URL (salted), so a document keeps its split when the "
        "dataset is refreshed.\n",
        "## Fields\n",
        _table(["field", "type"], [[n, t] for n, t in schema.LAYERS["dataset_release"] if n != "split"]) + "\n",
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
            "numbers were replaced by `<EMAIL>`, `<PHONE>`, `<IP_ADDRESS>`, `<CARD>`, `<IBAN>` and `<CN_ID>`, "
            "exact duplicates (same normalised text or "
            "URL) were removed keeping one per group, and each document got a topic from keyword rules "
            "(`topic_source` says so, `topic_confidence` is the share of keyword hits).\n",
            _table(["stage", "in", "kept", "rejected"], stats["stages"]) + "\n",
        ]
    if stats.get("reasons"):
        parts += ["### Why documents were dropped\n", _table(["stage", "rule", "documents"], stats["reasons"]) + "\n"]
    if stats.get("topics"):
        parts += ["## Labels\n", _table(["split", "topic", "documents"], stats["topics"]) + "\n"]
    parts += [
        "## Known limits\n",
        "- Only exact duplicates are removed; near-duplicates may remain.\n"
        "- Topics come from keyword rules and are not reviewed by people.\n"
        "- PII redaction covers structured identifiers only (e-mail, phone, IP, payment card, IBAN, Chinese ID "
        "number); names and postal addresses are not redacted.\n"
        "- No decontamination against evaluation benchmarks has been done.\n",
    ]
    return "\n".join(parts)
