"""The release as the graph makes it: the decontaminated layer, split (documents keep the split
a release gave them) and published with its card, manifest and diff (``release/publish.py``).
Nothing here imports Dagster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataset_platform.config import PlatformConfig
from dataset_platform.release.publish import ReleaseInfo, latest_release, publish_release, release_view_sql
from dataset_platform.release.shards import SourcePart
from dataset_platform.storage import (
    empty_layer_query,
    ensure_view,
    memory_connection,
    read_layer,
    sql_str,
    write_parquet,
)
from dataset_platform.storage.batched import BatchedLayer
from dataset_platform.workdir import Workdir

Log = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def release_stats(cfg: PlatformConfig, wd: Workdir) -> dict:
    """What the dataset card says of how the release was made: every stage's accounting and drop
    reasons (from the layers' manifests), annotator agreement, decontamination."""
    from dataset_platform.runner import STAGES, layer_extra, layer_totals
    from dataset_platform.stages.registry import order_of

    stages, reasons = [], []
    for st in STAGES:
        t = layer_totals(wd, st)
        if t is None:
            continue
        stages.append([st.name, t.input_rows, t.kept_rows, t.rejected_rows])
        reasons += [[st.name, rule, n] for rule, n in sorted(t.reasons.items())]
    reasons.sort(key=lambda r: (order_of(r[0]), r[1]))
    labelled = layer_extra(wd, "labelled_documents").get("prepared", {})
    decon = layer_totals(wd, "decontaminate")
    items = layer_extra(wd, "decontaminated_documents").get("prepared", {})
    dc = cfg.pipeline.decontamination
    benchmarks = [[k.split(":", 1)[1], int(v), int((decon.extra if decon else {}).get("matched:" + k.split(":", 1)[1], 0))]
                  for k, v in sorted(items.items()) if k.startswith("items:")]
    from dataset_platform.stages import takedown

    return {
        "takedowns": takedown.honoured(wd.root, takedown.load(cfg, wd.root)),
        "sources": [f"{s.name} ({s.kind})" for s in cfg.sources],
        "stages": stages,
        "reasons": reasons,
        "agreement": labelled.get("agreement", {}),
        # the quality model (version, threshold, mode, training rows), when one scored the documents
        **({"quality_model": q} if (q := layer_extra(wd, "scored_documents").get("prepared", {})).get("model_version")
           else {}),
        "decontamination": {"ngram": dc.ngram, "cjk_ngram": dc.cjk_ngram, "benchmarks": benchmarks},
    }


def materialise_release(cfg: PlatformConfig, wd: Workdir, log: Log = _noop, *, lineage: dict | None = None,
                        on_publish: Callable[[], None] | None = None) -> ReleaseInfo:
    """Publish the release of ``decontaminated_documents`` as it is now (a new version, or the
    current one when nothing changed). ``on_publish``: called once the version and the split
    assignments are in place, before the warehouse view (the asset step starts the release's
    checks there: they overlap the view and its metadata)."""
    con = memory_connection(memory_limit=cfg.pipeline.memory_limit, temp_dir=_spill(wd))
    prev = wd.split_assignments
    augment = cfg.pipeline.augmentation if cfg.pipeline.augmentation.enabled else None
    layer = "decontaminated_documents"
    folder = wd.layer_dir(layer)
    if not (folder / "manifest.json").exists():
        read_layer(wd, layer)  # raises: never materialised
    try:
        # the input layer's parts, held under its writer lock while they are read (a part whose
        # chain the previous release consumed is not read again: release/shards.py)
        with BatchedLayer(folder, layer).locked() as bl:
            parts = [SourcePart.parquet(k, bl.file(k), chain=info.chain, rows=info.rows) for k, info in bl.parts.items()]
            if not parts:
                parts = [SourcePart("", f"({empty_layer_query(layer, cfg.label_set_names)})")]
            tasks = _split_tasks(cfg, sum(p.rows or 0 for p in parts))
            info = publish_release(
                con, parts, wd.releases, cfg.dataset, cfg.pipeline.splits,
                config_fingerprint=cfg.fingerprint(), stats=release_stats(cfg, wd), label_sets=cfg.label_set_names,
                release=cfg.pipeline.release,
                previous_assignments_sql=f"read_parquet({sql_str(prev)})" if prev.exists() else None,
                lineage=lineage, augment=augment, tasks=tasks, shard_folder=_spill(wd) / "split", log=log,
            )
        # only once the release is in place: a failed publish keeps the old assignments (the table
        # is in id order; with no new document it is likely the same: then the file stays)
        write_parquet(con, "SELECT id, split, group_key FROM split_assignments", prev,
                      unless_same=info.split_stats.new == 0)
        if on_publish is not None:
            try:  # (a head start for the caller: its failure must not fail the published release)
                on_publish()
            except Exception as e:
                log(f"release: on_publish failed ({type(e).__name__}: {e}); the release is published")
    finally:
        con.close()
    sh = info.shards
    log(f"release {info.dataset} {info.version}: {info.rows} at {info.path}" + ("" if info.created else " (unchanged)")
        + f"; against {info.previous or 'no earlier release'}: {info.diff}; data files: {sh.get('reused', 0)} reused, "
        f"{sh.get('written', 0)} written ({sh.get('rows_written', 0)} rows)")
    ensure_view(wd, "dataset_release", release_view_sql(info.path))
    return info


def _split_tasks(cfg: PlatformConfig, rows: int):
    """Where the split's shard tasks run: on the Ray cluster (``pipeline.executor: ray``) when the
    release's documents, or the edges of their groups' graph, may exceed what one task holds
    (``release/split_shards.py``, ``stages/dedup/components.py``), else None (all runs here)."""
    if cfg.pipeline.executor != "ray":
        return None
    from dataset_platform.cluster.ray_tasks import task_memory_bytes, tasks
    from dataset_platform.release import split_shards
    from dataset_platform.stages.dedup import components

    memory, keys = task_memory_bytes(cfg), len(cfg.pipeline.splits.group_by)  # (an edge per key at most)
    if split_shards.shard_count(rows, memory) <= 1 and components.shard_count(rows * keys, memory) <= 1:
        return None
    return tasks(cfg, "split")


def current_release(cfg: PlatformConfig, wd: Workdir) -> Path | None:
    return latest_release(wd.releases, cfg.dataset.name)


def _spill(wd: Workdir) -> Path:
    p = wd.spill("release")
    p.mkdir(parents=True, exist_ok=True)
    return p
