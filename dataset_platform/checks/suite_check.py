"""The ``gx_suite`` check of a layer, without Dagster: whole-table expectations over the whole
layer, row-level ones over what the last materialisation wrote.

What is read: the whole-table expectations (``NATIVE_TYPES``) run in DuckDB over every file of
the layer, reading only the columns they name; the row-level ones (``BATCH_TYPES``) run in GX
over the units (parts, files, shards) the check has not validated yet (``checks/scope.py``:
normally exactly those the last materialisation wrote; of a file a global stage rewrites whole,
only its rows not validated before), as one stream rebatched to
``batch_rows``, so a refresh costs what it wrote, not the table. When the row-level expectations
pass (no critical failure) those units are recorded as validated; when they fail, they stay
pending and the next check validates them again, so a critical failure blocks until the data is
fixed, as a check over the whole table would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataset_platform.checks.gx_suites import SuiteOutcome, row_level_fingerprint, validate_relation
from dataset_platform.checks.scope import LayerFiles, Ledger, Unit, release_files, stored_layer
from dataset_platform.storage import query_connection
from dataset_platform.workdir import Workdir

CHECK = "gx_suite"


@dataclass
class SuiteCheck:
    layer: str
    outcome: SuiteOutcome
    units: int  # parts / files / shards of the layer
    units_validated: list[Unit]  # those the row-level expectations ran over
    recorded: bool  # they passed and are remembered as validated

    @property
    def layer_rows(self) -> int:
        return self.outcome.row_count

    @property
    def rows_validated(self) -> int:
        return int(self.outcome.rows_validated or 0)

    def scope(self) -> str:
        """In words: what the row-level expectations covered."""
        whole = [u.key for u in self.units_validated if u.by_rows]
        rewritten = (f"; of {', '.join(whole)} (rewritten whole), only the rows not validated before"
                     if whole else "")
        if not self.units_validated:
            return f"nothing new: all {self.units} file(s) of the layer were validated already"
        if len(self.units_validated) == self.units:
            return f"all {self.units} file(s) of the layer (none validated before under this suite){rewritten}"
        keys = [u.key for u in self.units_validated]
        shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
        return f"{len(keys)} of {self.units} file(s), not validated before: {shown}{rewritten}"


def layer_files(cfg, wd: Workdir, layer: str) -> LayerFiles | None:
    """The files of ``layer`` (the current release for ``dataset_release``); None when there are
    none yet."""
    if layer == "dataset_release":
        from dataset_platform.release.materialise import current_release

        release = current_release(cfg, wd)
        return None if release is None else release_files(release)
    from dataset_platform.contracts.schema import LABELLED_LAYERS

    return stored_layer(wd, layer, cfg.label_set_names if layer in LABELLED_LAYERS else ())


def run_suite_check(cfg, wd: Workdir, layer: str, suite: Path, *, batch_rows: int = 100_000,
                    files: LayerFiles | None = None) -> SuiteCheck:
    """Validate ``layer`` against ``suite`` (see the module docstring). Raises FileNotFoundError
    when the layer has not been materialised."""
    files = files or layer_files(cfg, wd, layer)
    if files is None:
        raise FileNotFoundError(f"layer {layer!r} has not been materialised yet: materialise it first")
    label_sets = cfg.label_values
    ledger = Ledger(wd, layer, CHECK, row_level_fingerprint(suite, label_sets))
    todo = ledger.pending(files.units)
    con = query_connection()
    try:
        by_rows = [u for u in todo if u.by_rows]
        rows_sql = files.subset_sql([u for u in todo if not u.by_rows])
        if rows_sql is None:  # the files cannot be read apart: validate them all
            todo, by_rows, rows_sql = list(files.units), [], files.whole_sql
        rows_sql = " UNION ALL BY NAME ".join(
            [f"SELECT * FROM {rows_sql}"] + [f"SELECT * FROM {ledger.rows_sql(con, u)}" for u in by_rows])
        outcome = validate_relation(con, f"SELECT * FROM {files.whole_sql}", suite, label_sets=label_sets,
                                    batch_rows=batch_rows, rows_sql=rows_sql)
        recorded = outcome.row_level_critical_passed
        if recorded:
            # (also a unit validated whole before its rows were kept: all of them were validated)
            ledger.record_rows(con, [u for u in files.units if u in todo or (u.by_rows and not ledger.has_rows(u))])
            ledger.record(files.units, todo)
    finally:
        con.close()
    return SuiteCheck(layer, outcome, len(files.units), todo, recorded)
