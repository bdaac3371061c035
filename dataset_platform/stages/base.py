"""What every stage shares: its result counters and how its outputs are written.

A stage works on a private DuckDB connection and leaves two tables there: ``kept`` (the
documents that go on) and ``rejected`` (id, source, url, stage, rule, value). Nothing is dropped
without a row in ``rejected``: ``input_rows == kept_rows + rejected_rows`` is checked here and
again as a Dagster asset check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dataset_platform.storage import write_parquet


class AccountingError(RuntimeError):
    """A stage lost or invented documents."""


@dataclass
class StageResult:
    stage: str
    input_rows: int
    kept_rows: int
    rejected_rows: int
    reasons: dict[str, int] = field(default_factory=dict)  # rule -> rejected count
    extra: dict[str, int | float] = field(default_factory=dict)  # stage-specific counters

    @property
    def balanced(self) -> bool:
        return self.input_rows == self.kept_rows + self.rejected_rows

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return f"{self.stage}: in {self.input_rows}, kept {self.kept_rows}, rejected {self.rejected_rows} ({reasons})"


def finish_stage(con: duckdb.DuckDBPyConnection, stage: str, *, input_rows: int,
                 kept_rows: int | None = None) -> StageResult:
    """Account for the stage (``kept_rows``: the kept count, when counting ``kept`` would cost a scan)."""
    kept = con.sql("SELECT count(*) FROM kept").fetchall()[0][0] if kept_rows is None else kept_rows
    reasons = dict(con.sql("SELECT rule, count(*) FROM rejected GROUP BY rule ORDER BY rule").fetchall())
    result = StageResult(stage, int(input_rows), int(kept), int(sum(reasons.values())), reasons)
    if not result.balanced:
        raise AccountingError(
            f"{stage}: {input_rows} documents in, but {kept} kept + {result.rejected_rows} rejected; "
            "a rule dropped documents without recording them"
        )
    return result


def write_outputs(
    con: duckdb.DuckDBPyConnection, layer: str, kept_path: Path, rejects_path: Path | None,
    kept_sql: str | None = None, label_sets: list[str] | tuple[str, ...] = (),
) -> None:
    """Write ``kept`` (cast to the layer contract) and ``rejected`` atomically, ordered by id
    (``kept_sql``: a stage that knows its rows are in id order can spare the sort)."""
    write_parquet(con, kept_sql or "SELECT * FROM kept ORDER BY id", kept_path, layer=layer, label_sets=label_sets)
    if rejects_path is not None:
        write_parquet(
            con, "SELECT * FROM rejected ORDER BY id, rule", rejects_path, layer="rejected_documents"
        )


def available_cpus() -> int:
    """The CPUs this process may use (its affinity mask; all of them off Linux): the default
    number of worker processes of every stage."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def streamable_view(con: duckdb.DuckDBPyConnection, name: str, select_sql: str) -> None:
    """Create view ``name`` as ``select_sql`` so that a second cursor of ``con`` can stream it;
    when the query reads objects registered on ``con`` (which other cursors cannot see), the rows
    are copied into a table first."""
    con.sql(f"CREATE OR REPLACE VIEW {name} AS {select_sql}")
    probe = con.cursor()
    try:
        probe.sql(f"SELECT * FROM {name} LIMIT 0").fetchall()
    except duckdb.Error:
        con.sql(f"CREATE OR REPLACE TABLE {name}_t AS {select_sql}")
        con.sql(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_t")
    finally:
        probe.close()
