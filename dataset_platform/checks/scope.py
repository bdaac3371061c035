"""What a check reads: a layer's files, and which of them a row-level check has not validated yet.

A layer is a list of :class:`Unit` s, one per file, each with an ``identity`` that changes
whenever the file's rows may have changed:

* a layer stored by batch (``storage/batched.py``; the raw layer has one such folder per source):
  one unit per live part, its identity what the commit point records of it (the generation that
  wrote its files, how its rows were computed, the fingerprint of its ids, its rows). Parts are
  written whole and never changed in place: a part with the same record holds the same rows;
* ``crawl_log`` (one file per landed batch, written once, no manifest): one unit per file, its
  identity the file's size and modification time;
* ``rejected_documents``: the ``rejected.parquet`` of every part of the per-batch stages' layers
  (as their parts) and each global stage's rejects file (as a plain file);
* the release: one unit per data file its manifest lists, its identity the file's sha256 (a
  shard a version reuses from the previous one is the same unit); without a manifest, every file
  (by size and modification time);
* a layer stored as one file (``duplicate_clusters``): that file.

A file that a global stage rewrites whole on every refresh (``duplicate_clusters``, dedup's
rejects) is a unit ``by_rows``: most of its rows are those of the last version, so once it was
validated the ledger also keeps a fingerprint of each of its rows (128-bit, over the row as JSON),
and :meth:`Ledger.rows_sql` reads only the rows whose fingerprint it does not hold. A row-level
expectation judges each row on its own, so a row validated once need not be validated again.

A :class:`Ledger` remembers, per layer and check, the units the check validated without a
critical failure, under a fingerprint of what it checked (the row-level expectations, GX's
version); :meth:`Ledger.pending` is every unit it has not validated as it is now. Normally that
is exactly what the last materialisation wrote (a part whose generation is the layer's, the
crawl_log files of the batches the last raw refresh landed, the shards the release wrote); it is
more when a check failed (its units stay pending, so a failure keeps failing until the data is
fixed: blocking semantics are those of a check over the whole table), was not run (a CLI run)
or changed (everything is pending). The ledger lives in ``<workdir>/checks/``; deleting it only
makes the next checks validate everything. Nothing here imports Dagster or GX.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dataset_platform import atomic
from dataset_platform.storage import empty_layer_query, files_sql, sql_str
from dataset_platform.storage.batched import DATA, MANIFEST, PART_JSON, REJECTED
from dataset_platform.workdir import BATCHED, PER_BATCH_FILE, Workdir


@dataclass(frozen=True)
class Unit:
    key: str  # '<source>/<part>', '<source>/<batch>' (crawl_log), 'data/<shard>' (release), ...
    identity: str  # changes whenever the file's rows may have changed
    file: Path
    rows: int | None = None  # when the commit point records it
    by_rows: bool = False  # rewritten whole by a global stage: new rows told apart by content


@dataclass
class LayerFiles:
    """A layer as files: ``whole_sql`` reads all of it (FROM-able, every column), ``subset_sql``
    the rows of some units (the same columns; None when it cannot be restricted)."""

    layer: str
    units: list[Unit]
    whole_sql: str
    _subset: Callable[[list[Unit]], str | None]

    def subset_sql(self, units: list[Unit]) -> str | None:
        if not units:
            return f"(SELECT * FROM {self.whole_sql} WHERE false)"
        if len(units) == len(self.units):
            return self.whole_sql
        return self._subset(units)

    def known_rows(self) -> int | None:
        """Rows of the layer as its commit point records them (None when it does not)."""
        if any(u.rows is None for u in self.units):
            return None
        return sum(u.rows or 0 for u in self.units)


def _files_or_empty(files: list[Path], layer: str, label_sets=()) -> str:
    return files_sql(files) if files else f"({empty_layer_query(layer, label_sets)})"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def part_identity(info: dict) -> str:
    """What a commit point records of a part, as one string (see the module docstring)."""
    return f"gen {info.get('gen')}; chain {info.get('chain')}; ids {info.get('ids')}; rows {info.get('rows')}"


def stat_identity(path: Path) -> str:
    st = path.stat()
    return f"bytes {st.st_size}; mtime {st.st_mtime_ns}"


def batched_units(folder: Path, *, prefix: str = "", file: str = DATA) -> list[Unit]:
    """The live parts of a layer stored by batch (its manifest, read only), file ``file`` of each."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return []
    meta = _read_json(manifest)
    out = []
    for key, info in sorted(meta.get("parts", {}).items()):
        f = folder / key / file
        if file != DATA and not f.exists():
            continue
        identity = part_identity(info)
        if _gen_of(folder / key) != info.get("gen"):
            # committed but not moved in yet (or being replaced): read it, never record it
            identity = "unsettled; " + identity
        out.append(Unit(prefix + key, identity, f, int(info.get("rows", 0)) if file == DATA else None))
    return out


def _gen_of(part_dir: Path) -> int | None:
    try:
        return int(_read_json(part_dir / PART_JSON)["gen"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def file_units(files: Iterable[Path], root: Path, *, by_rows: bool = False) -> list[Unit]:
    return [Unit(str(f.relative_to(root)), stat_identity(f), f, by_rows=by_rows) for f in sorted(files)]


def stored_layer(wd: Workdir, layer: str, label_sets=()) -> LayerFiles | None:
    """A layer of the work folder (not the release; see :func:`release_files`), or None while it
    has not been materialised."""
    if layer == "rejected_documents":
        return _rejected(wd)
    if layer == "raw_pages":
        root = wd.layer_dir(layer)
        sources = sorted(p for p in root.iterdir() if (p / MANIFEST).exists()) if root.is_dir() else []
        if not sources:
            return None
        units = [u for s in sources for u in batched_units(s, prefix=s.name + "/")]
    elif layer in BATCHED:
        if not (wd.layer_dir(layer) / MANIFEST).exists():
            return None
        units = batched_units(wd.layer_dir(layer))
    elif layer in PER_BATCH_FILE:
        files = wd.layer_files(layer)
        if not files:
            return None
        units = file_units(files, wd.layer_dir(layer))
    else:
        if not wd.layer(layer).exists():
            return None
        units = file_units([wd.layer(layer)], wd.layer_dir(layer), by_rows=True)
    return LayerFiles(layer, units, _files_or_empty([u.file for u in units], layer, label_sets),
                      lambda sub: files_sql([u.file for u in sub]))


def _rejected(wd: Workdir) -> LayerFiles | None:
    from dataset_platform.runner import rejected_sql
    from dataset_platform.stages.registry import STAGES

    units: list[Unit] = []
    for st in STAGES:
        if st.per_batch:
            units += batched_units(wd.layer_dir(st.output), prefix=f"{st.output}/", file=REJECTED)
        elif wd.rejects(st.name).exists():
            units += file_units([wd.rejects(st.name)], wd.layers, by_rows=True)
    if not units:
        return None
    return LayerFiles("rejected_documents", units, rejected_sql(wd), lambda sub: files_sql([u.file for u in sub]))


def release_files(release: Path) -> LayerFiles:
    """The data files of a published release (``release/publish.py``'s layout): the units its
    manifest lists (identity: sha256), else every file. ``subset_sql`` reads some files through
    the release's own view (:func:`release_view_sql`: the split column is its business)."""
    from dataset_platform.release.publish import release_view_sql

    whole = release_view_sql(release)
    manifest = release / "manifest.json"
    units: list[Unit] = []
    listed = _read_json(manifest).get("files", {}) if manifest.exists() else {}
    for rel, info in sorted(listed.items()):
        f = release / rel
        if rel.startswith("data/") and rel.endswith(".parquet") and isinstance(info, dict) and info.get("sha256"):
            units.append(Unit(rel, f"sha256 {info['sha256']}", f, info.get("rows")))
    on_disk = sorted((release / "data").glob("*.parquet"))
    if sorted(u.file for u in units) != on_disk:  # the manifest does not name every file read: by file
        units = file_units(on_disk, release)
    glob = sql_str(release / "data" / "*.parquet")

    def subset(sub: list[Unit]) -> str | None:
        if glob not in whole:
            return None  # the view reads its files another way: validate them all
        return whole.replace(glob, "[" + ", ".join(sql_str(u.file) for u in sub) + "]")

    return LayerFiles("dataset_release", units, whole, subset)


# ------------------------------------------------------------------ the ledger


class Ledger:
    """The units of ``layer`` that check ``check`` validated without a critical failure, under
    ``fingerprint`` (see the module docstring)."""

    def __init__(self, wd: Workdir, layer: str, check: str, fingerprint: str):
        self.path = wd.check_state(layer, check)
        self.fingerprint = fingerprint
        self._done: dict[str, str] = {}
        try:
            data = _read_json(self.path)
        except (OSError, ValueError):
            data = {}
        if isinstance(data, dict) and data.get("fingerprint") == fingerprint and isinstance(data.get("units"), dict):
            self._done = {str(k): str(v) for k, v in data["units"].items()}
        self._identities = set(self._done.values())

    def _validated(self, u: Unit) -> bool:
        if self._done.get(u.key) == u.identity:
            return True
        # content-addressed units (release shards) are the same unit under another name: a shard a
        # new version reuses is renamed when its split gains a shard (-of-00001 -> -of-00002)
        return u.identity.startswith("sha256 ") and u.identity in self._identities

    def pending(self, units: list[Unit]) -> list[Unit]:
        """The units not validated as they are now."""
        return [u for u in units if not self._validated(u)]

    def record(self, live: list[Unit], validated: list[Unit]) -> None:
        """``validated`` passed: remember them, and forget units that are no longer ``live`` (with
        the row fingerprints kept for a unit no longer live, or under another fingerprint of the
        check or another DuckDB: their names say neither, so every file not named for a live unit
        under this fingerprint goes)."""
        keep = {self._rows_file(u).name for u in live if u.by_rows}
        for old in self.path.parent.glob(f"{self.path.stem}.rows-*.parquet"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        now = {u.key: u.identity for u in live if self._validated(u)}
        now.update({u.key: u.identity for u in validated if not u.identity.startswith("unsettled")})
        if now == self._done and self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.path, json.dumps({"fingerprint": self.fingerprint, "units": dict(sorted(now.items()))},
                                                indent=1) + "\n")
        self._done = now
        self._identities = set(now.values())

    # -- units by rows (see the module docstring)

    def _rows_file(self, u: Unit) -> Path:
        import duckdb

        tag = fingerprint(self.fingerprint, duckdb.__version__, u.key)
        return self.path.with_name(f"{self.path.stem}.rows-{tag}.parquet")

    def has_rows(self, u: Unit) -> bool:
        """The row fingerprints of unit by rows ``u`` are kept."""
        return self._rows_file(u).exists()

    def rows_sql(self, con, u: Unit) -> str:
        """FROM-able: the rows of ``u`` to validate -- for a unit by rows with rows validated
        before, those whose fingerprint is not among theirs; else every row."""
        whole = files_sql([u.file])
        seen = self._rows_file(u) if u.by_rows else None
        if seen is None or not seen.exists():
            return whole
        return (f"(SELECT * FROM {whole} WHERE {_row_fp(con, whole)} NOT IN "
                f"(SELECT fp FROM read_parquet({sql_str(seen)})))")

    def record_rows(self, con, units: list[Unit]) -> None:
        """Keep the row fingerprints of the units by rows among ``units`` (validated: every row of
        each is now either new and validated, or validated before)."""
        for u in units:
            if not u.by_rows or u.identity.startswith("unsettled"):
                continue
            dest = self._rows_file(u)
            dest.parent.mkdir(parents=True, exist_ok=True)
            whole = files_sql([u.file])
            tmp = dest.with_name(f".{dest.name}.tmp")
            con.sql(f"COPY (SELECT DISTINCT {_row_fp(con, whole)} AS fp FROM {whole} ORDER BY 1) "
                    f"TO {sql_str(tmp)} (FORMAT parquet)")
            tmp.replace(dest)


def _row_fp(con, relation: str) -> str:
    """SQL for a 128-bit fingerprint of each row of ``relation``: md5 over the row as JSON."""
    cols = con.sql(f"SELECT * FROM {relation} LIMIT 0").columns
    return "md5_number(to_json(struct_pack(" + ", ".join('"' + c.replace('"', '""') + '"' for c in cols) + ")))"


def fingerprint(*parts: object) -> str:
    """A short, stable fingerprint of JSON-able values."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
