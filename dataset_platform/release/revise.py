"""Takedowns in published versions: ``dataset-platform takedown revise --release V``.

A refresh keeps every takedown request out of the layers and of the *new* release
(``stages/takedown.py``). Versions published before a request still hold its documents; revising
one writes a new version without them and retires the old one:

* the documents removed are those a request targets in the version's rows (URL, domain, id,
  text, content hash of the text), those the layers removed for a request
  (``layers/takedowns/removed.parquet``: near-duplicates included), rows within dedup's threshold of
  a removed text (MinHash), and the augmented copies of any of them;
* the new version has the old one's shards without those rows (a shard holding none is a hard
  link to the same file), its index, diff and run bookkeeping filtered the same way, a manifest
  with ``revision_of`` and the requests honoured, and a card that lists them; its id is the hash of
  its content, as for every version;
* the old version is marked ``superseded_by`` in its manifest and card, and **its data files are
  deleted**: a takedown means the documents must stop being served, and a version kept on disk is
  a version someone can still load. Its manifest, card, index and diff (ids and fingerprints, no
  text) stay, so the history remains auditable. Shards the new version shares with it stay (they
  are the new version's files too).
* when the revised version was the newest (``LATEST``), ``LATEST`` and the ``dataset_release``
  view move to the new one.

Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataset_platform.config import PlatformConfig
from dataset_platform.release import shards
from dataset_platform.stages import takedown
from dataset_platform.storage import memory_connection, sql_str, write_parquet
from dataset_platform.workdir import Workdir


@dataclass
class Revision:
    old: str
    new: str | None  # None: nothing to remove (no new version)
    removed: int = 0
    requests: list[str] = field(default_factory=list)
    shards_rewritten: int = 0
    shards_linked: int = 0
    deleted_files: int = 0
    note: str = ""


def revise(cfg: PlatformConfig, wd: Workdir, versions: list[str], log=lambda _m: None) -> list[Revision]:
    """Revise each of ``versions`` (see the module docstring)."""
    dataset_dir = wd.releases / cfg.dataset.name
    takedowns = takedown.load(cfg, wd.root)
    if not takedowns and not takedown.registry_file(wd.root).exists():
        raise ValueError("no takedown requests: list them in takedowns.yaml (pipeline.takedowns) or drop a file "
                         f"into {takedown.inbox(wd.root)}, then run a refresh and revise again")
    out = []
    for v in versions:
        path = dataset_dir / v
        if not (path / "manifest.json").exists():
            known = sorted(p.name for p in dataset_dir.iterdir() if (p / "manifest.json").exists()) \
                if dataset_dir.is_dir() else []
            raise ValueError(f"release {v!r} of dataset {cfg.dataset.name!r} not found in {dataset_dir}; "
                             f"versions: {', '.join(known) or 'none'}")
        out.append(_revise_one(cfg, wd, dataset_dir, path, takedowns, log))
    return out


def _revise_one(cfg, wd: Workdir, dataset_dir: Path, path: Path, takedowns, log) -> Revision:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("superseded_by"):
        return Revision(path.name, manifest["superseded_by"],
                        note=f"already superseded by {manifest['superseded_by']} (revise that one if needed)")
    files = sorted((path / "data").glob("*.parquet"))
    if not files:
        raise ValueError(f"{path}: the version has no data files to revise")
    con = memory_connection(memory_limit=cfg.pipeline.memory_limit, temp_dir=_spill(wd))
    try:
        hits = _hits(con, cfg, wd, files, takedowns)
        if not hits:
            log(f"revise {path.name}: no document of a takedown request in it; nothing to do")
            return Revision(path.name, None, note="holds no document of a takedown request")
        removed_ids = pa.array(sorted(hits), pa.string())
        tmp = dataset_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        (tmp / "data").mkdir(parents=True)
        try:
            rev = _write_version(con, cfg, wd, dataset_dir, path, manifest, tmp, hits, removed_ids, takedowns)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        con.close()
    _retire(path, manifest, rev)
    log(f"revise {rev.old}: {rev.removed} document(s) removed for {', '.join(rev.requests)} -> {rev.new} "
        f"({rev.shards_rewritten} shard(s) rewritten, {rev.shards_linked} linked); {rev.old} superseded, "
        f"its {rev.deleted_files} data file(s) deleted")
    return rev


def _hits(con, cfg, wd: Workdir, files: list[Path], takedowns) -> dict[str, tuple[str, str]]:
    """id -> (rule, request id) of the version's rows to remove."""
    con.sql("CREATE OR REPLACE TEMP VIEW _td_in AS SELECT filename AS key, * EXCLUDE (filename) FROM read_parquet(["
            + ", ".join(sql_str(f) for f in files) + "], filename = true, union_by_name = true)")
    columns = set(con.sql("SELECT * FROM _td_in LIMIT 0").columns)
    direct = takedown.match_sql(takedowns, "_td_in", columns)
    arms = [f"SELECT id, rule, value, 0 AS pri FROM ({direct})"] if direct else []
    arms.append(f"SELECT r.id, r.rule, r.value, 1 AS pri FROM {takedown.removed_ids_sql(wd.root)} r "
                "SEMI JOIN _td_in i ON i.id = r.id")
    con.sql("CREATE OR REPLACE TEMP TABLE _td_hits AS SELECT id, arg_min(rule, pri) AS rule, "
            f"arg_min(value, pri) AS value FROM ({' UNION ALL '.join(arms)}) GROUP BY id")
    near = takedown._near_settings(cfg)
    if near is not None and "text" in columns:
        takedown._near_duplicates(con, wd.root, near, {str(f) for f in files})
    if "augmented_from" in columns:  # an augmented copy goes with its original
        con.sql("INSERT INTO _td_hits SELECT i.id, h.rule, h.value FROM _td_in i JOIN _td_hits h "
                "ON h.id = i.augmented_from WHERE i.id NOT IN (SELECT id FROM _td_hits)")
    return {i: (r, v) for i, r, v in con.sql("SELECT id, rule, value FROM _td_hits ORDER BY id").fetchall()}


def _write_version(con, cfg, wd: Workdir, dataset_dir: Path, path: Path, manifest: dict, tmp: Path,
                   hits: dict, removed_ids: pa.Array, takedowns) -> Revision:
    from dataset_platform.release.publish import _shares, _write_text_atomic, dataset_card, release_view_sql

    old_files = manifest.get("files", {})
    new_files, rows = {}, {}
    rewritten = linked = 0
    for rel, meta in sorted(old_files.items()):
        src, dest = path / rel, tmp / rel
        table = pq.read_table(src)
        keep = pc.invert(pc.is_in(table.column("id"), value_set=removed_ids)) if table.num_rows else None
        if keep is None or pc.all(keep).as_py():
            shards._link(src, dest)
            new_files[rel] = dict(meta)
            linked += 1
        else:
            kept = table.filter(keep)
            writer = shards._parquet_writer(dest, kept.schema)
            if kept.num_rows:
                writer.write_table(kept, row_group_size=shards.ROW_GROUP_ROWS)
            writer.close()
            text = int(sum(pc.sum(pc.fill_null(pc.binary_length(kept.column(c)), 0)).as_py() or 0
                           for c in ("text", "title") if c in kept.column_names))
            new_files[rel] = {"sha256": shards.sha256_file(dest), "rows": kept.num_rows,
                              "bytes": dest.stat().st_size, "text_bytes": text, "arrow_bytes": shards.arrow_bytes(dest)}
            rewritten += 1
        split = rel.split("/", 1)[1].split("-", 1)[0]
        rows[split] = rows.get(split, 0) + int(new_files[rel]["rows"])
    con.register("_removed", pa.table({"id": removed_ids}))
    index = path / shards.INDEX
    if index.exists():
        write_parquet(con, f"SELECT * FROM read_parquet({sql_str(index)}) WHERE id NOT IN (SELECT id FROM _removed)",
                      tmp / shards.INDEX)
    # the diff says what the revision removed against the version it revises
    write_parquet(con, "SELECT id, 'removed' AS change, s.split AS split_before, NULL::VARCHAR AS split_after FROM "
                       f"_removed r LEFT JOIN (SELECT id, split FROM read_parquet({sql_str(index)})) s USING (id) "
                       "ORDER BY id" if index.exists() else
                       "SELECT id, 'removed' AS change, NULL::VARCHAR AS split_before, NULL::VARCHAR AS split_after "
                       "FROM _removed ORDER BY id", tmp / "diff.parquet")
    digest = hashlib.sha256(json.dumps({"files": {k: v["sha256"] for k, v in sorted(new_files.items())},
                                        "config": manifest.get("config_sha256")}, sort_keys=True).encode()).hexdigest()
    version = "v" + digest[:12]
    requests = sorted({v for _r, v in hits.values()})
    by_id = takedowns.by_id()
    honoured = [[r, by_id[r].date.isoformat() if r in by_id else "", by_id[r].kind if r in by_id else "withdrawn",
                 takedown._shown_target(by_id[r]) if r in by_id else "", sum(1 for _x, v in hits.values() if v == r)]
                for r in requests]
    label_sets = manifest.get("label_sets", [])
    stats = dict(manifest.get("stats", {}))
    if (tmp / shards.INDEX).exists():
        stats.update(_shares(con, tmp / shards.INDEX, label_sets))
    stats["takedowns"] = honoured
    stats["diff"] = {"added": 0, "removed": len(hits), "changed": 0}
    stats["previous_version"] = path.name
    con.unregister("_removed")
    new_manifest = {**manifest, "version": version, "previous_version": path.name, "revision_of": path.name,
                    "rows": rows, "total_rows": sum(rows.values()), "files": dict(sorted(new_files.items())),
                    "diff": stats["diff"], "stats": stats, "takedowns": honoured,
                    "shards": {"reused": linked, "written": rewritten, "rows_reused": None, "rows_written": None,
                               "revision": True}}
    new_manifest.pop("superseded_by", None)
    (tmp / "manifest.json").write_text(json.dumps(new_manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    splits = cfg.pipeline.splits.model_copy(update=dict(manifest.get("split_ratios", {})))
    card = dataset_card(cfg.dataset, version, {s: rows.get(s, 0) for s in ("train", "validation", "test")}, splits,
                        stats, label_sets=label_sets, max_shard_bytes=cfg.pipeline.release.max_shard_bytes,
                        files=new_files)
    card += (f"\n## Revision\n\nThis version is {path.name} without the documents of the takedown requests listed "
             f"above ({len(hits)} documents, near-duplicates and augmented copies included). {path.name} is "
             "superseded and its data files were deleted.\n")
    (tmp / "README.md").write_text(card, encoding="utf-8")
    final = dataset_dir / version
    if not final.exists():
        os.rename(tmp, final)
    # the run bookkeeping of the old version, without the removed documents (the next release
    # then need not read the documents again)
    old_rows, old_meta = shards.parts_files(dataset_dir, path.name)
    new_rows, new_meta = shards.parts_files(dataset_dir, version)
    if old_rows.exists() and old_meta.exists():
        con.register("_removed", pa.table({"id": removed_ids}))
        write_parquet(con, f"SELECT * FROM read_parquet({sql_str(old_rows)}) WHERE id NOT IN (SELECT id FROM _removed) "
                           "ORDER BY ALL", new_rows)
        con.unregister("_removed")
        shutil.copyfile(old_meta, new_meta)
    latest = dataset_dir / "LATEST"
    if latest.exists() and latest.read_text(encoding="utf-8").strip() == path.name:
        _write_text_atomic(latest, version + "\n")
        from dataset_platform.storage import ensure_view

        ensure_view(wd, "dataset_release", release_view_sql(final))
    return Revision(path.name, version, len(hits), requests, rewritten, linked)


def _retire(path: Path, manifest: dict, rev: Revision) -> None:
    """Mark the old version superseded (manifest and card) and delete its data files."""
    from dataset_platform.release.publish import _write_text_atomic

    manifest = {**manifest, "superseded_by": rev.new, "superseded_for": rev.requests, "data_deleted": True}
    _write_text_atomic(path / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    card = (path / "README.md").read_text(encoding="utf-8") if (path / "README.md").exists() else ""
    banner = (f"> **Superseded by {rev.new}.** Documents were removed at the request of the people or publishers "
              f"concerned (takedown requests {', '.join(rev.requests)}); this version's data files were deleted. "
              f"Use {rev.new}.\n\n")
    if "**Superseded by" not in card:
        head, sep, body = card.partition("\n---\n") if card.startswith("---") else ("", "", card)
        card = head + sep + ("\n" if sep else "") + banner + body.lstrip("\n")
        _write_text_atomic(path / "README.md", card)
    data = path / "data"
    rev.deleted_files = sum(1 for _ in data.glob("*.parquet")) if data.is_dir() else 0
    shutil.rmtree(data, ignore_errors=True)


def _spill(wd: Workdir) -> Path:
    p = wd.spill("release")
    p.mkdir(parents=True, exist_ok=True)
    return p
