"""Great Expectations suites per layer, validated over a relation in bounded memory.

A suite is a plain JSON file (``expectations/<layer>.json``)::

    {"name": "<layer>", "expectations": [{"type": "expect_...", "kwargs": {...},
                                          "severity": "critical" | "warning" | "info"}]}

Row-level expectations (``BATCH_TYPES``) run with GX's pandas engine on Arrow record batches of
at most ``batch_rows`` rows and about ``batch_bytes`` bytes streamed from DuckDB (one GX run per
batch, each with a fixed cost: narrow columns go in large batches, texts in smaller ones); their
element, missing and unexpected counts
are summed over the batches and ``mostly`` is applied to the totals, exactly as GX applies it to
one batch. They run over ``rows_sql`` when one is given (the asset check passes the files the
last materialisation wrote: ``checks/suite_check.py``), else over the whole relation.
Expectations that need the whole table at once (``NATIVE_TYPES``: uniqueness, row count, column
list, distinct counts, z-scores, IQR fences) are evaluated by DuckDB over the whole relation,
reading only the columns they name (DuckDB pushes the projection into the Parquet scan), on a
thread of their own while GX validates the rows (DuckDB runs outside the GIL; at 1M documents
they were a third of a layer's validation). Any other type is refused when the suite is loaded.

This module does not import dagster; ``great_expectations`` is imported lazily (it is slow and
large), only when there are rows to validate, and one ephemeral GX context is reused for the
life of the process.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataset_platform.contracts.schema import label_columns

SEVERITIES = ("critical", "warning", "info")
SAMPLE_SIZE = 10
_MAX_SAMPLE_CHARS = 200

#: Row-level (map) expectations: each row passes or fails on its own, so counts add up over batches.
BATCH_TYPES: frozenset[str] = frozenset({
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_null",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list",
    "expect_column_values_to_match_strftime_format",
    "expect_column_values_to_be_dateutil_parseable",
    "expect_column_values_to_be_json_parseable",
    "expect_column_values_to_match_json_schema",
    "expect_column_pair_values_to_be_equal",
    "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_pair_values_to_be_in_set",
    "expect_multicolumn_sum_to_equal",
    "expect_select_column_values_to_be_unique_within_record",
})

#: Whole-table expectations evaluated in DuckDB SQL: type -> (required kwargs, optional kwargs).
NATIVE_TYPES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "expect_column_values_to_be_unique": (frozenset({"column"}), frozenset({"mostly"})),
    "expect_compound_columns_to_be_unique": (frozenset({"column_list"}), frozenset({"mostly", "ignore_row_if"})),
    "expect_table_row_count_to_be_between": (
        frozenset(), frozenset({"min_value", "max_value", "strict_min", "strict_max"})),
    "expect_table_columns_to_match_ordered_list": (frozenset({"column_list"}), frozenset()),
    "expect_table_columns_to_match_set": (frozenset({"column_set"}), frozenset({"exact_match"})),
    # diversity: how many distinct values (sources, languages, label values) the whole table holds
    "expect_column_unique_value_count_to_be_between": (frozenset({"column"}), frozenset({"min_value", "max_value"})),
    # distribution: outliers by z-score against the whole table's mean and standard deviation
    "expect_column_value_z_scores_to_be_less_than": (
        frozenset({"column", "threshold", "double_sided"}), frozenset({"mostly"})),  # as GX: double_sided required
    # distribution: outliers outside Tukey's fences (q1 - k*IQR, q3 + k*IQR) of the whole table;
    # not a GX core type (GX has no IQR expectation): evaluated here only
    "expect_column_values_to_be_within_iqr_fences": (frozenset({"column"}), frozenset({"k", "mostly"})),
}

#: native types that are ours, not Great Expectations' (everything else keeps GX's name and meaning)
OWN_TYPES: frozenset[str] = frozenset({"expect_column_values_to_be_within_iqr_fences"})

_COLUMN_KEYS = ("column", "column_A", "column_B")
_COLUMN_LIST_KEYS = ("column_list", "column_set")
_IGNORE_ROW_IF = ("all_values_are_missing", "any_value_is_missing", "never")
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}
_IDX = "dataset_platform_index"  # meta key mapping GX results back to suite positions


class SuiteError(ValueError):
    """A suite file is malformed or uses an expectation this module cannot evaluate."""


@dataclass
class ExpectationOutcome:
    """The result of one expectation over the whole table.

    For row-level expectations ``element_count`` is the number of rows and ``unexpected_count``
    the rows that failed. For column-list expectations they count columns (observed, and
    mismatched); for the row-count expectation ``unexpected_count`` is 0 and ``observed_value``
    holds the row count.
    """

    type: str
    kwargs: dict[str, Any]
    severity: str
    success: bool
    element_count: int
    unexpected_count: int
    sample_unexpected: list[Any]  # at most SAMPLE_SIZE values
    engine: str  # "gx" or "duckdb"
    observed_value: Any = None


@dataclass
class SuiteOutcome:
    """``row_count``: rows of the whole relation (what whole-table expectations saw);
    ``rows_validated``: rows the row-level expectations saw (``row_count`` unless they ran over a
    part of it)."""

    suite: str
    row_count: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    rows_validated: int | None = None

    def __post_init__(self) -> None:
        if self.rows_validated is None:
            self.rows_validated = self.row_count

    @property
    def row_level_critical_passed(self) -> bool:
        """No critical row-level (GX) expectation failed: the rows validated are clean."""
        return not any(o.engine == "gx" and not o.success for o in self.failed("critical"))

    @property
    def critical_passed(self) -> bool:
        """All "critical" expectations passed."""
        return not self.failed("critical")

    @property
    def warnings_passed(self) -> bool:
        """All "warning" expectations passed."""
        return not self.failed("warning")

    def failed(self, severity: str | None = None) -> list[ExpectationOutcome]:
        """Failed expectations, optionally only those of one severity."""
        return [o for o in self.outcomes if not o.success and (severity is None or o.severity == severity)]

    def explain(self, limit: int = 5) -> str | None:
        """The failed expectations in a few words each: what was expected and what was observed (the
        check's description, shown in the UI and by ``dataset-platform run``); None when all passed."""
        failed = sorted(self.failed(), key=lambda o: ("critical", "warning", "info").index(o.severity)
                        if o.severity in ("critical", "warning", "info") else 3)
        if not failed:
            return None
        lines = []
        for o in failed[:limit]:
            cols = _columns_label(o.kwargs)
            what = o.type.removeprefix("expect_") + (f" on {cols}" if cols else "") + _args(o.kwargs)
            if o.sample_unexpected or o.unexpected_count:
                sample = json.dumps(o.sample_unexpected[:3], ensure_ascii=False, default=str)
                seen = f"{o.unexpected_count:,} of {o.element_count:,} unexpected, e.g. {_short(sample, 120)}"
            else:
                seen = f"observed {_short(json.dumps(o.observed_value, ensure_ascii=False, default=str), 120)}"
            lines.append(f"[{o.severity}] {_short(what, 160)}: {seen}")
        if len(failed) > limit:
            lines.append(f"... and {len(failed) - limit} more (see the results table)")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A compact table for Dagster metadata."""
        n_ok = sum(o.success for o in self.outcomes)
        rows = f"{self.row_count:,} rows" if self.rows_validated == self.row_count else (
            f"{self.row_count:,} rows (row-level expectations over the {self.rows_validated:,} rows the last "
            "materialisation wrote; whole-table ones over all)")
        head = (
            f"**{self.suite}**: {rows}, {n_ok}/{len(self.outcomes)} expectations passed "
            f"(critical: {_verdict(self.critical_passed)}, warnings: {_verdict(self.warnings_passed)})"
        )
        lines = [head, "", "| result | severity | expectation | column | unexpected | sample / observed |",
                 "|---|---|---|---|---|---|"]
        for o in self.outcomes:
            detail = o.sample_unexpected[:3] if o.sample_unexpected else o.observed_value
            cells = [
                "pass" if o.success else "**FAIL**",
                o.severity,
                _short(o.type.removeprefix("expect_") + _args(o.kwargs), 90),
                _short(_columns_label(o.kwargs), 40),
                f"{o.unexpected_count:,} / {o.element_count:,}",
                "" if detail in (None, []) else _short(json.dumps(detail, ensure_ascii=False, default=str), 80),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# loading


def expectations_dir() -> Path:
    """``expectations/`` of the checkout (or $DATASET_PLATFORM_EXPECTATIONS)."""
    env = os.environ.get("DATASET_PLATFORM_EXPECTATIONS")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "expectations"
    if not d.is_dir():
        raise FileNotFoundError(
            f"GX suites not found at {d}: install from a checkout (`pip install -e .`) or set "
            "DATASET_PLATFORM_EXPECTATIONS to the expectations/ folder"
        )
    return d


def load_suite(path: Path) -> dict[str, Any]:
    """Read and check a suite file; raises SuiteError naming the file and the problem."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{path}: suite file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SuiteError(f"{path}: not a readable JSON file ({e})") from None

    def fail(msg: str) -> SuiteError:
        return SuiteError(f"{path}: {msg}")

    if not isinstance(spec, dict):
        raise fail("the top level must be an object with 'name' and 'expectations'")
    extra = set(spec) - {"name", "expectations", "meta", "notes"}
    if extra:
        raise fail(f"unknown top-level key(s) {sorted(extra)}; allowed: name, expectations, meta, notes")
    if not isinstance(spec.get("meta", {}), dict):
        raise fail("'meta' must be an object")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise fail("'name' must be a non-empty string")
    exps = spec.get("expectations")
    if not isinstance(exps, list) or not exps:
        raise fail("'expectations' must be a non-empty list")
    for i, e in enumerate(exps):
        where = f"expectations[{i}]"
        if not isinstance(e, dict):
            raise fail(f"{where} must be an object with 'type', 'kwargs' and 'severity'")
        extra = set(e) - {"type", "kwargs", "severity", "meta", "notes"}
        if extra:
            raise fail(f"{where}: unknown key(s) {sorted(extra)}; allowed: type, kwargs, severity, meta, notes")
        if not isinstance(e.get("meta", {}), dict):
            raise fail(f"{where}: 'meta' must be an object")
        typ, kwargs, severity = e.get("type"), e.get("kwargs"), e.get("severity")
        if not isinstance(typ, str):
            raise fail(f"{where}: 'type' must be a string")
        where = f"{where} ({typ})"
        if not isinstance(kwargs, dict):
            raise fail(f"{where}: 'kwargs' must be an object")
        if severity not in SEVERITIES:
            raise fail(f"{where}: 'severity' must be one of {list(SEVERITIES)}, got {severity!r}")
        if typ in NATIVE_TYPES:
            required, optional = NATIVE_TYPES[typ]
            missing, unknown = required - set(kwargs), set(kwargs) - required - optional
            if missing or unknown:
                raise fail(f"{where}: kwargs missing {sorted(missing)} / not supported {sorted(unknown)} "
                           f"(required {sorted(required)}, optional {sorted(optional)})")
        elif typ not in BATCH_TYPES:
            raise fail(
                f"{where}: expectation type not supported. Row-level types run per batch with GX: "
                f"{sorted(BATCH_TYPES)}; whole-table types run in DuckDB: {sorted(NATIVE_TYPES)}"
            )
        elif not any(k in kwargs for k in (*_COLUMN_KEYS, "column_list")):
            raise fail(f"{where}: kwargs must name the column(s) ('column', 'column_A'/'column_B' or 'column_list')")
        patterns = ([kwargs["regex"]] if "regex" in kwargs else []) + list(kwargs.get("regex_list") or [])
        for rx in patterns:
            try:
                re.compile(rx)
            except (re.error, TypeError) as exc:
                raise fail(f"{where}: invalid regular expression {rx!r} ({exc})") from None
        mostly = kwargs.get("mostly", 1.0)
        if isinstance(mostly, bool) or not isinstance(mostly, int | float) or not 0 <= mostly <= 1:
            raise fail(f"{where}: 'mostly' must be a number between 0 and 1, got {mostly!r}")
        for k in _COLUMN_KEYS:
            if k in kwargs and (not isinstance(kwargs[k], str) or not kwargs[k]):
                raise fail(f"{where}: {k!r} must be a non-empty string")
        for k in _COLUMN_LIST_KEYS:
            if k in kwargs and (not isinstance(kwargs[k], list) or not kwargs[k]
                                or not all(isinstance(c, str) and c for c in kwargs[k])):
                raise fail(f"{where}: {k!r} must be a non-empty list of column names")
        if kwargs.get("ignore_row_if", _IGNORE_ROW_IF[0]) not in _IGNORE_ROW_IF:
            raise fail(f"{where}: 'ignore_row_if' must be one of {list(_IGNORE_ROW_IF)}")
    return spec


def referenced_columns(expectation: dict[str, Any]) -> list[str]:
    """Every column name an expectation's kwargs mention."""
    kw = expectation.get("kwargs", {})
    cols = [kw[k] for k in _COLUMN_KEYS if k in kw]
    for k in _COLUMN_LIST_KEYS:
        cols += list(kw.get(k, []))
    return cols


# ---------------------------------------------------------------------------------------------
# validating


#: placeholder in a column list: the label columns of every configured label set, in order
LABEL_COLUMNS = "{label_columns}"


def expand_label_sets(spec: dict[str, Any], label_sets: dict[str, list[str]]) -> dict[str, Any]:
    """Expand the label-set templates of a suite for the configured label sets.

    The columns of the labelled layers depend on the configuration (three per label set), so a
    suite cannot name them. An expectation whose ``meta`` has ``"for_each_label_set": true`` is
    repeated once per set, with ``{set}`` in its kwargs replaced by the set's name and the value
    ``"{values}"`` by the set's allowed values; the item ``"{label_columns}"`` of a column list
    becomes ``<set>, <set>_source, <set>_confidence`` for every set.
    """
    out = []
    for e in spec["expectations"]:
        kwargs = e["kwargs"]
        for key in _COLUMN_LIST_KEYS:
            if LABEL_COLUMNS in kwargs.get(key, []):
                cols: list[str] = []
                for c in kwargs[key]:
                    cols += [n for n, _ in label_columns(list(label_sets))] if c == LABEL_COLUMNS else [c]
                kwargs = {**kwargs, key: cols}
        if not e.get("meta", {}).get("for_each_label_set"):
            out.append({**e, "kwargs": kwargs})
            continue
        for name, values in label_sets.items():
            out.append({**e, "kwargs": {k: _for_set(v, name, values) for k, v in kwargs.items()}})
    return {**spec, "expectations": out}


def _for_set(v: Any, name: str, values: list[str]) -> Any:
    """A template kwarg for one label set: "{values}" -> its values, "{set}" -> its name."""
    if v == "{values}":
        return list(values)
    return v.replace("{set}", name) if isinstance(v, str) else v


#: at most this many rows per GX run, and about this many bytes of Arrow data (the columns read)
BATCH_ROWS = 1_000_000
BATCH_BYTES = 256 << 20


def validate_parquet(
    path_or_glob: str | Path, suite_path: Path, *, batch_rows: int = BATCH_ROWS,
    label_sets: dict[str, list[str]] | None = None,
) -> SuiteOutcome:
    """Validate a Parquet file (or a glob of files) against a suite."""
    con = duckdb.connect(":memory:")
    try:
        src = "'" + str(path_or_glob).replace("'", "''") + "'"
        return validate_relation(con, f"SELECT * FROM read_parquet({src})", suite_path, batch_rows=batch_rows,
                                 label_sets=label_sets)
    finally:
        con.close()


def validate_relation(
    con: duckdb.DuckDBPyConnection, sql: str, suite_path: Path, *, batch_rows: int = BATCH_ROWS,
    label_sets: dict[str, list[str]] | None = None, rows_sql: str | None = None, batch_bytes: int = BATCH_BYTES,
) -> SuiteOutcome:
    """Validate a query against a suite in bounded memory (``label_sets``: name -> allowed values,
    for suites of the labelled layers). Whole-table expectations see every row of ``sql``;
    row-level ones see the rows of ``rows_sql`` (a query with the same columns: the part of the
    table to validate row by row), every row of ``sql`` when it is None."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be >= 1")
    spec = expand_label_sets(load_suite(suite_path), label_sets or {})
    sql = sql.strip().rstrip(";")
    rows_sql = sql if rows_sql is None else rows_sql.strip().rstrip(";")
    columns = con.sql(f"SELECT * FROM ({sql}) AS _q LIMIT 0").columns
    row_count = _count(con, sql)
    rows_validated = row_count if rows_sql == sql else _count(con, rows_sql)

    outcomes: dict[int, ExpectationOutcome] = {}
    batch_specs: dict[int, dict[str, Any]] = {}
    natives: list[tuple[int, dict[str, Any]]] = []
    for i, e in enumerate(spec["expectations"]):
        if e["type"] in NATIVE_TYPES:
            natives.append((i, e))
            continue
        absent = [c for c in referenced_columns(e) if c not in columns]
        if absent:
            outcomes[i] = _outcome(e, False, rows_validated, 0, [], "gx", observed=f"missing column(s): {absent}")
        else:
            batch_specs[i] = e
    side = _side_connection(con, sql) if natives and batch_specs else None
    whole: Future | None = None
    try:
        if side is not None:  # the whole-table ones beside GX's row-level work
            whole = _native_pool().submit(_natives, side, sql, natives, columns, row_count)
        else:
            outcomes.update(_natives(con, sql, natives, columns, row_count))
        if batch_specs:
            outcomes.update(_validate_batches(con, rows_sql, columns, batch_specs, Path(suite_path), batch_rows,
                                              batch_bytes, rows_validated))
    finally:
        if whole is not None:
            try:
                outcomes.update(whole.result())  # (raises as it would have, before the rows)
            finally:
                side.close()
    return SuiteOutcome(spec["name"], row_count, [outcomes[i] for i in sorted(outcomes)], rows_validated)


_NATIVE_POOL: ThreadPoolExecutor | None = None
_NATIVE_POOL_LOCK = threading.Lock()


def _native_pool() -> ThreadPoolExecutor:
    """Threads for the whole-table expectations (two: a service process validates two suites at
    most at once, and a test may validate from more threads; more would queue)."""
    global _NATIVE_POOL
    with _NATIVE_POOL_LOCK:
        if _NATIVE_POOL is None:
            _NATIVE_POOL = ThreadPoolExecutor(2, thread_name_prefix="gx-whole-table")
        return _NATIVE_POOL


def _natives(con: duckdb.DuckDBPyConnection, sql: str, natives: list[tuple[int, dict[str, Any]]],
             columns: list[str], row_count: int) -> dict[int, ExpectationOutcome]:
    return {i: _native(con, sql, e, columns, row_count) for i, e in natives}


def _side_connection(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyConnection | None:
    """A second connection to ``con``'s database that can read ``sql`` (it cannot when ``sql``
    names something of ``con``'s own: a temporary table, a registered Arrow table), else None."""
    side = con.cursor()
    try:
        side.sql(f"SELECT * FROM ({sql}) AS _q LIMIT 0").fetchall()
    except duckdb.Error:
        side.close()
        return None
    return side


def row_level_fingerprint(suite_path: Path, label_sets: dict[str, list[str]] | None = None) -> str:
    """Changes whenever what the row-level expectations of a suite check may change: their
    types, kwargs and severities (label sets expanded), GX's version and this module's way of
    running them. A row validated under one fingerprint need not be validated again under it."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    spec = expand_label_sets(load_suite(suite_path), label_sets or {})
    rows = [[e["type"], e["kwargs"], e["severity"]] for e in spec["expectations"] if e["type"] in BATCH_TYPES]
    try:
        gx_version = version("great_expectations")
    except PackageNotFoundError:  # pragma: no cover
        gx_version = "?"
    blob = json.dumps([ROW_LEVEL_VERSION, gx_version, rows], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


#: bump when the way row-level expectations are evaluated changes (every row is validated again)
ROW_LEVEL_VERSION = "1"


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.sql(f"SELECT count(*) FROM ({sql}) AS _q").fetchall()[0][0])


# ---------------------------------------------------------------------------------------------
# the GX (per batch) path

_GX_LOCK = threading.Lock()
_GX_BATCH_DEFINITION: Any = None


def _batch_definition() -> Any:
    """The process-wide GX batch definition for in-memory dataframes (built on first use).

    Call it holding ``_GX_LOCK``: the context and its data source are shared by every caller.
    """
    global _GX_BATCH_DEFINITION
    if _GX_BATCH_DEFINITION is None:
        import great_expectations as gx
        import great_expectations.execution_engine.pandas_execution_engine as pandas_engine
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        # GX fingerprints every dataframe batch below this size (an md5 over a hash of every
        # cell, only stored as a batch marker). On text batches that costs more time and memory
        # than all our expectations together (1M rows of 3 KB text: 24 s -> 6 s, 4.1 -> 2.6 GB).
        pandas_engine.HASH_THRESHOLD = 0
        from dataset_platform.checks import gx_memo

        gx_memo.install()  # GX's repeated conversions, done once (checks/gx_memo.py)

        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            ),
        )
        _GX_BATCH_DEFINITION = (
            context.data_sources.add_pandas("dataset_platform_batches")
            .add_dataframe_asset("batch")
            .add_batch_definition_whole_dataframe("whole_batch")
        )
    return _GX_BATCH_DEFINITION


@dataclass
class _Tally:
    element: int = 0
    missing: int = 0
    unexpected: int = 0
    sample: list[Any] = field(default_factory=list)


def _validate_batches(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    columns: list[str],
    specs: dict[int, dict[str, Any]],
    suite_path: Path,
    batch_rows: int,
    batch_bytes: int,
    n_rows: int,
) -> dict[int, ExpectationOutcome]:
    if n_rows == 0:  # nothing to validate: GX is not even imported
        return {i: _outcome(e, True, 0, 0, [], "gx") for i, e in specs.items()}
    from great_expectations.core import ExpectationSuite
    from great_expectations.validator.v1_validator import Validator

    from dataset_platform.checks import gx_memo

    needed = {c for e in specs.values() for c in referenced_columns(e)}
    select = ", ".join(_quote(c) for c in columns if c in needed)
    tallies = {i: _Tally() for i in specs}
    with _GX_LOCK:
        batch_definition = _batch_definition()
        configs = {i: {"type": e["type"], "kwargs": e["kwargs"], "severity": e["severity"],
                       "meta": {**e.get("meta", {}), _IDX: i}} for i, e in specs.items()}
        for i, config in configs.items():
            try:
                ExpectationSuite(name=suite_path.stem, expectations=[config])
            except Exception as exc:  # GX's own check of the kwargs
                raise SuiteError(f"{suite_path}: expectations[{i}] ({config['type']}): GX rejects it: "
                                 + " ".join(str(exc).split())) from exc
        suite = ExpectationSuite(name=suite_path.stem, expectations=list(configs.values()))
        reader = con.sql(f"SELECT {select} FROM ({sql}) AS _q").to_arrow_reader(min(batch_rows, _READ_ROWS))
        try:
            for table in _rebatch(reader, batch_rows, batch_bytes):
                df = _widen(table).to_pandas()
                del table
                # What Batch.validate does, without first building a Batch it would not use.
                with gx_memo.memoised_configurations():
                    result = Validator(
                        batch_definition=batch_definition, batch_parameters={"dataframe": df},
                        result_format=_RESULT_FORMAT,
                    ).validate_expectation_suite(suite)
                del df
                for r in result.results:
                    i = r.expectation_config.meta[_IDX]
                    error = _gx_error(r.exception_info)
                    if error is not None:
                        raise SuiteError(
                            f"{suite_path}: {specs[i]['type']} {specs[i]['kwargs']} failed to run in GX: {error}")
                    res, t = r.result, tallies[i]
                    t.element += int(res.get("element_count") or 0)
                    t.missing += int(res.get("missing_count") or 0)
                    t.unexpected += int(res.get("unexpected_count") or 0)
                    room = SAMPLE_SIZE - len(t.sample)
                    if room > 0:
                        t.sample += [_plain(v) for v in (res.get("partial_unexpected_list") or [])[:room]]
        finally:
            reader.close()
    out = {}
    for i, e in specs.items():
        t = tallies[i]
        considered = t.element - t.missing
        mostly = float(e["kwargs"].get("mostly", 1.0))
        success = considered == 0 or (considered - t.unexpected) / considered >= mostly
        out[i] = _outcome(e, success, t.element, t.unexpected, t.sample, "gx")
    return out


def _gx_error(info: Any) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if any.

    GX reports it either flat (``{"raised_exception": True, ...}``) or per metric
    (``{"<metric id>": {"raised_exception": True, ...}}``).
    """
    if not isinstance(info, dict):
        return None
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(v.get("exception_message")) for v in found if v.get("raised_exception")]
    return "; ".join(messages) if messages else None


#: rows per record batch read from DuckDB (the GX batches are assembled from these): the layers'
#: row groups. Smaller reads cost more (1M rows of ~3 KB texts: 6.0 s at 100k, 7.8 s at 16k: GX
#: works slower on columns of many chunks; merging the chunks first costs more still, 9.6 s)
_READ_ROWS = 100_000


def _rebatch(reader: Any, rows: int, max_bytes: int | None = None) -> Iterator[pa.Table]:
    """Tables of at most ``rows`` rows and about ``max_bytes`` bytes (at least one record batch:
    wider rows than ``max_bytes / _READ_ROWS`` give one read batch per table) from a record batch
    stream; every table but the last holds exactly ``rows`` rows unless the
    byte bound closed it first.

    DuckDB's stream yields batches of uneven size; evening them out keeps the number of GX runs,
    each with a fixed cost, low: about max(rows / ``rows``, bytes / ``max_bytes``).
    """
    pending: list[pa.RecordBatch] = []
    size = nbytes = 0
    for batch in reader:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        size += batch.num_rows
        nbytes += batch.nbytes
        while size >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, size = rest.to_batches(), rest.num_rows
            nbytes = sum(b.nbytes for b in pending)
        if max_bytes is not None and size and nbytes >= max_bytes:
            yield pa.Table.from_batches(pending)
            pending, size, nbytes = [], 0, 0
    if size:
        yield pa.Table.from_batches(pending)


def _widen(table: pa.Table) -> pa.Table:
    """Small ints/floats as 64-bit: GX's pandas range checks are vectorised only for int64/float64."""
    fields = []
    for f in table.schema:
        if pa.types.is_integer(f.type) and f.type != pa.int64() and f.type != pa.uint64():
            f = f.with_type(pa.int64())
        elif pa.types.is_floating(f.type) and f.type != pa.float64():
            f = f.with_type(pa.float64())
        fields.append(f)
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema)


# ---------------------------------------------------------------------------------------------
# the DuckDB (whole table) path


def _native(
    con: duckdb.DuckDBPyConnection, sql: str, e: dict[str, Any], columns: list[str], row_count: int
) -> ExpectationOutcome:
    typ, kw = e["type"], e["kwargs"]
    if typ == "expect_table_row_count_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        ok = (lo is None or (row_count > lo if kw.get("strict_min") else row_count >= lo)) and (
            hi is None or (row_count < hi if kw.get("strict_max") else row_count <= hi))
        return _outcome(e, ok, row_count, 0, [], "duckdb", observed=row_count)
    if typ == "expect_table_columns_to_match_ordered_list":
        expected = kw["column_list"]
        bad = [f"{n}: expected {a!r}, got {b!r}"
               for n in range(max(len(expected), len(columns)))
               if (a := _at(expected, n)) != (b := _at(columns, n))]
        return _outcome(e, not bad, len(columns), len(bad), bad, "duckdb", observed=list(columns))
    if typ == "expect_table_columns_to_match_set":
        expected = set(kw["column_set"])
        bad = [f"missing {c!r}" for c in kw["column_set"] if c not in columns]
        if kw.get("exact_match", True):
            bad += [f"unexpected {c!r}" for c in columns if c not in expected]
        return _outcome(e, not bad, len(columns), len(bad), bad, "duckdb", observed=list(columns))
    if typ in _DISTRIBUTION_TYPES:
        if kw["column"] not in columns:
            return _outcome(e, False, row_count, 0, [], "duckdb", observed=f"missing column(s): {[kw['column']]}")
        return _DISTRIBUTION_TYPES[typ](con, sql, e)
    # uniqueness of one column or of a combination of columns
    cols = [kw["column"]] if typ == "expect_column_values_to_be_unique" else kw["column_list"]
    absent = [c for c in cols if c not in columns]
    if absent:
        return _outcome(e, False, row_count, 0, [], "duckdb", observed=f"missing column(s): {absent}")
    quoted = [_quote(c) for c in cols]
    ignore = "any_value_is_missing" if typ == "expect_column_values_to_be_unique" else kw.get(
        "ignore_row_if", "all_values_are_missing")
    skip = {"all_values_are_missing": " AND ".join(f"{c} IS NULL" for c in quoted),
            "any_value_is_missing": " OR ".join(f"{c} IS NULL" for c in quoted),
            "never": "false"}[ignore]
    fields = ", ".join(f"'{_sql_str_body(c)}': {q}" for c, q in zip(cols, quoted))
    key = quoted[0] if len(cols) == 1 else "{" + fields + "}"
    mostly = float(kw.get("mostly", 1.0))
    # the usual case first: as many distinct keys as rows considered (one aggregate, no groups
    # kept), counted by the keys' 64-bit hashes: equal keys have equal hashes, so as many distinct
    # hashes as rows means as many distinct keys (a collision only sends it to the exact count
    # below). 30-40 % less than counting the keys themselves (1M ids: 0.074 s against 0.102 s).
    ((considered, distinct),) = con.sql(
        f"SELECT count(*) FILTER (WHERE NOT ({skip})), count(DISTINCT hash({', '.join(quoted)})) "
        f"FILTER (WHERE NOT ({skip})) FROM ({sql}) AS _q").fetchall()
    if int(considered) == int(distinct):
        return _outcome(e, True, row_count, 0, [], "duckdb")
    missing, unexpected, sample = con.sql(f"""
        WITH g AS (
          SELECT {key} AS k, ({skip}) AS skipped, count(*) AS n
          FROM ({sql}) AS _q GROUP BY ALL
        )
        SELECT coalesce(sum(n) FILTER (WHERE skipped), 0)::BIGINT,
               coalesce(sum(n) FILTER (WHERE NOT skipped AND n > 1), 0)::BIGINT,
               coalesce(min(k, {SAMPLE_SIZE}) FILTER (WHERE NOT skipped AND n > 1), [])
        FROM g
    """).fetchall()[0]
    considered = row_count - int(missing)
    ok = considered == 0 or (considered - int(unexpected)) / considered >= mostly
    return _outcome(e, ok, row_count, int(unexpected), [_plain(v) for v in sample], "duckdb")


def _unique_value_count(con: duckdb.DuckDBPyConnection, sql: str, e: dict[str, Any]) -> ExpectationOutcome:
    kw = e["kwargs"]
    col = _quote(kw["column"])
    ((n, sample),) = con.sql(
        f"SELECT count(DISTINCT {col}), list(DISTINCT {col} ORDER BY {col})[1:{SAMPLE_SIZE}] FROM ({sql}) AS _q"
    ).fetchall()
    lo, hi = kw.get("min_value"), kw.get("max_value")
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    return _outcome(e, ok, int(n), 0 if ok else 1, [_plain(v) for v in (sample or [])], "duckdb", observed=int(n))


def _outliers(con: duckdb.DuckDBPyConnection, sql: str, e: dict[str, Any], outside: str,
              stats_sql: str) -> tuple[int, int, list[Any], dict[str, Any]]:
    """(non-null values, values for which ``outside`` holds, a sample of them, the statistics used);
    ``outside`` is SQL over the value ``x`` and the statistics ``s.*``."""
    col = _quote(e["kwargs"]["column"])
    ((considered, unexpected, sample, stats),) = con.sql(f"""
        WITH v AS (SELECT CAST({col} AS DOUBLE) AS x FROM ({sql}) AS _q WHERE {col} IS NOT NULL),
             s AS (SELECT {stats_sql} FROM v)
        SELECT count(*), count(*) FILTER (WHERE {outside}),
               coalesce(list(x ORDER BY x DESC) FILTER (WHERE {outside}), [])[1:{SAMPLE_SIZE}],
               any_value(s)
        FROM v CROSS JOIN s
    """).fetchall()
    return int(considered), int(unexpected), list(sample or []), dict(stats or {})


def _z_scores(con: duckdb.DuckDBPyConnection, sql: str, e: dict[str, Any]) -> ExpectationOutcome:
    """As GX: z = (x - mean) / sample standard deviation; a value passes when |z| < threshold
    (z < threshold when not double-sided); a column without spread has no outliers."""
    kw = e["kwargs"]
    t = float(kw["threshold"])
    z = "(x - s.mean) / s.sd"
    outside = f"s.sd > 0 AND {'abs(' + z + ')' if kw['double_sided'] else z} >= {t}"
    considered, unexpected, sample, stats = _outliers(con, sql, e, outside, "avg(x) AS mean, stddev_samp(x) AS sd")
    ok = considered == 0 or (considered - unexpected) / considered >= float(kw.get("mostly", 1.0))
    return _outcome(e, ok, considered, unexpected, sample, "duckdb",
                    observed={k: None if v is None else round(float(v), 3) for k, v in stats.items()})


def _iqr_fences(con: duckdb.DuckDBPyConnection, sql: str, e: dict[str, Any]) -> ExpectationOutcome:
    """Tukey's fences: a value passes when q1 - k*IQR <= x <= q3 + k*IQR (k defaults to 1.5)."""
    kw = e["kwargs"]
    k = float(kw.get("k", 1.5))
    outside = f"(x < s.q1 - {k} * (s.q3 - s.q1) OR x > s.q3 + {k} * (s.q3 - s.q1))"
    considered, unexpected, sample, stats = _outliers(
        con, sql, e, outside, "quantile_cont(x, 0.25) AS q1, quantile_cont(x, 0.75) AS q3")
    ok = considered == 0 or (considered - unexpected) / considered >= float(kw.get("mostly", 1.0))
    return _outcome(e, ok, considered, unexpected, sample, "duckdb",
                    observed={k_: None if v is None else round(float(v), 3) for k_, v in stats.items()})


_DISTRIBUTION_TYPES = {
    "expect_column_unique_value_count_to_be_between": _unique_value_count,
    "expect_column_value_z_scores_to_be_less_than": _z_scores,
    "expect_column_values_to_be_within_iqr_fences": _iqr_fences,
}


# ---------------------------------------------------------------------------------------------
# helpers


def _outcome(e: dict[str, Any], success: bool, element: int, unexpected: int, sample: list[Any],
             engine: str, *, observed: Any = None) -> ExpectationOutcome:
    return ExpectationOutcome(
        type=e["type"], kwargs=dict(e["kwargs"]), severity=e["severity"], success=bool(success),
        element_count=int(element), unexpected_count=int(unexpected), sample_unexpected=list(sample[:SAMPLE_SIZE]),
        engine=engine, observed_value=observed,
    )


def _plain(v: Any) -> Any:
    """A JSON-friendly copy of a sample value (long strings shortened)."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):  # numpy scalar
        try:
            v = v.item()
        except (TypeError, ValueError):
            pass
    if (isinstance(v, float) and math.isnan(v)) or type(v).__name__ in ("NAType", "NaTType"):
        return None  # pandas' missing markers
    if isinstance(v, str | int | float | bool):
        return v[:_MAX_SAMPLE_CHARS] + "…" if isinstance(v, str) and len(v) > _MAX_SAMPLE_CHARS else v
    return str(v)


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _sql_str_body(s: str) -> str:
    return s.replace("'", "''")


def _at(items: list[str], n: int) -> str | None:
    return items[n] if n < len(items) else None


def _verdict(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def _columns_label(kwargs: dict[str, Any]) -> str:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs.get('column_B', '')}"
    if "column_list" in kwargs or "column_set" in kwargs:
        return f"({len(kwargs.get('column_list') or kwargs.get('column_set'))} columns)"
    return ""


def _args(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in (*_COLUMN_KEYS, *_COLUMN_LIST_KEYS)}
    return "(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")" if shown else ""


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
