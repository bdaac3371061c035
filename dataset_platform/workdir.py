"""Every path of the work folder, and nothing else.

::

    <workdir>/                          default ./.dataset_platform
      warehouse.duckdb                  views only, one per table (storage.ensure_view: a new file
                                        renamed over it; warehouse.views.json lists them)
      layers/<layer>/<source>/<part>/   a part of a layer stored by batch (BATCHED): data.parquet,
                                        rejected.parquet (what the stage dropped), part.json;
                                        layers/<layer>/manifest.json is the commit point
      layers/raw_pages/<source>/        the raw layer: one BatchedLayer per source (its own manifest)
      layers/crawl_log/<source>/        <crawl_id>.parquet, one per landed batch
      layers/<layer>/data.parquet       a layer stored as one file (FILE)
      layers/rejected/<stage>.parquet   what a global stage (dedup) dropped
      layers/deduplicated_documents/minhash_index/   the dedup stage's index
      layers/labelled_documents/models/ the label stage's trained classifiers, by fingerprint
      layers/split_assignments/         every (id, split, group_key) a release assigned
      raw/<source>/                     landed batches (a file, or a <batch>.ranges/ folder), crawl state,
                                        quarantine files, .lock
      inbox/<source>/, inbox/annotations/   files dropped by users (processed/ once taken)
      annotation/export/                Label Studio tasks of the documents that most need review
      releases/<dataset>/<version>/     published releases; releases/<dataset>/LATEST
      retired/                          partitions of sources removed from the config
      tmp/                              DuckDB spill folders (tmp/<stage>/)
      checks/<layer>/<check>.json       what a check validated already (checks/scope.py: its ledger)
      checks/<layer>/profile/           per part: lengths, languages, sources for the layer's profile
      demo_site/, data_docs/, alerts/, dagster_home/

Nothing here imports DuckDB or Dagster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dataset_platform.contracts.schema import BATCHED_LAYERS

DEFAULT_WORKDIR = ".dataset_platform"

#: layers stored by batch: ``layers/<layer>/<source>/<part>/data.parquet`` (the raw layer has one
#: manifest per source, the others one per layer)
BATCHED = BATCHED_LAYERS  # (the contract's: contracts/schema.py)
#: layers stored as one file per landed batch: ``layers/<layer>/<source>/<batch>.parquet``
PER_BATCH_FILE = ("crawl_log",)


@dataclass(frozen=True)
class Workdir:
    root: Path

    @classmethod
    def at(cls, path: str | Path | None = None) -> Workdir:
        p = Path(path or os.environ.get("DATASET_PLATFORM_WORKDIR") or DEFAULT_WORKDIR).expanduser().resolve()
        return cls(p)

    def ensure(self) -> Workdir:
        for p in (self.root, self.layers, self.releases):
            p.mkdir(parents=True, exist_ok=True)
        return self

    # ------------------------------------------------------------------ the warehouse and layers
    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    def layer_dir(self, name: str) -> Path:
        """The folder of a layer."""
        return self.layers / name

    def layer(self, name: str) -> Path:
        """The Parquet file of a layer stored as one file."""
        if name in BATCHED or name in PER_BATCH_FILE:
            raise ValueError(f"{name} is stored in parts: use layer_glob / layer_files")
        return self.layers / name / "data.parquet"

    def layer_glob(self, name: str, file: str = "data.parquet") -> str:
        """A read_parquet() pattern covering every file of a layer (``file``: which file of each part)."""
        if name in BATCHED:
            return str(self.layers / name / "*" / "*" / file)
        if name in PER_BATCH_FILE:
            return str(self.layers / name / "*" / "*.parquet")
        return str(self.layers / name / "data.parquet")

    def layer_files(self, name: str, file: str = "data.parquet") -> list[Path]:
        """The files of a layer that exist, sorted (by source, then part)."""
        if name in BATCHED:
            return sorted((self.layers / name).glob(f"*/*/{file}"))
        if name in PER_BATCH_FILE:
            return sorted((self.layers / name).glob("*/*.parquet"))
        p = self.layers / name / "data.parquet"
        return [p] if p.exists() else []

    def raw_source(self, source: str) -> Path:
        """The raw layer of one source (a BatchedLayer folder with its own manifest)."""
        return self.layers / "raw_pages" / source

    def crawl_log_file(self, source: str, crawl_id: str) -> Path:
        """crawl_log rows of one batch (written once; a reload of the batch rewrites the same file)."""
        return self.layers / "crawl_log" / source / f"{crawl_id}.parquet"

    def rejects(self, stage: str) -> Path:
        """What a global stage (dedup) rejected; per-batch stages keep theirs in each part."""
        return self.layers / "rejected" / f"{stage}.parquet"

    def stage_state(self, layer: str, what: str) -> Path:
        """State a stage keeps beside its layer (the dedup stage's ``minhash_index``, the label
        stage's ``models``)."""
        return self.layers / layer / what

    @property
    def split_assignments(self) -> Path:
        """Every (id, split, group_key) any release assigned: documents keep their split for good."""
        return self.layers / "split_assignments" / "data.parquet"

    def spill(self, stage: str) -> Path:
        """Where a stage's DuckDB spills beyond its memory limit (created on demand)."""
        return self.root / "tmp" / stage

    # ------------------------------------------------------------------ raw batches and inboxes
    def raw_batches(self, source: str) -> Path:
        """Landed batches of a source (``<batch>.jsonl.gz``), its lock and crawl state."""
        return self.root / "raw" / source

    def crawl_state(self, source: str) -> Path:
        """Scrapy job state of an unfinished crawl of ``source`` (resumed by the next crawl)."""
        return self.root / "raw" / source / "state"

    def file_hashes(self, source: str) -> Path:
        """The batch ids of a source's dump files hashed before, keyed by path, size, mtime and
        inode, so that a refresh does not read unchanged files again. Deleting it is harmless."""
        return self.raw_batches(source) / "file-hashes.json"

    def inbox(self, source: str) -> Path:
        """Drop WARC/JSONL/Parquet files here to ingest them into ``source``."""
        return self.root / "inbox" / source

    @property
    def annotations_inbox(self) -> Path:
        """Drop Label Studio JSON exports here; the labelled layer is refreshed with them."""
        return self.root / "inbox" / "annotations"

    @property
    def annotation_export(self) -> Path:
        """Label Studio tasks (and labeling config) of the documents that most need review."""
        return self.root / "annotation" / "export"

    def retired(self, layer: str, source: str) -> Path:
        """Where a partition of a source removed from the config is moved."""
        return self.root / "retired" / layer / source

    # ------------------------------------------------------------------ releases and the rest
    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def demo_site(self) -> Path:
        return self.root / "demo_site"

    @property
    def data_docs(self) -> Path:
        """GX Data Docs of every suite check: ``site/index.html`` and the validation results."""
        return self.root / "data_docs"

    def check_state(self, layer: str, check: str) -> Path:
        """The units (parts, files) of ``layer`` that ``check`` validated already: its ledger
        (``checks/scope.py``). Deleting it only makes the next check validate everything."""
        return self.root / "checks" / layer / f"{check}.json"

    def check_counts(self, layer: str, check: str) -> Path:
        """Per file of ``layer``: the counts ``check`` combines (``checks/diversity.py``), so that
        it reads only the files not counted before. Deleting it only makes the next check read
        every file."""
        return self.root / "checks" / layer / f"{check}-counts"

    def profile_cache(self, layer: str) -> Path:
        """Per part of ``layer``: the lengths, languages and sources its profile needs, so that
        a materialisation's profile reads no text but that of the parts it wrote
        (``checks/profile.py``). Deleting it only makes the next profile read every part."""
        return self.root / "checks" / layer / "profile"

    @property
    def alerts(self) -> Path:
        """One JSON line per failed run (written by the run-failure sensor)."""
        return self.root / "alerts" / "run_failures.jsonl"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"
