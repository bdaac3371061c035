"""``dataset-platform sql``: a query on the work folder's warehouse, read-only.

The warehouse (``warehouse.duckdb``) holds views only, and a run never keeps it open for
writing: it publishes a changed view by writing a new file and renaming it over the old one
(``storage.ensure_view``). So a read-only connection here neither blocks nor changes a running
pipeline; it sees the views as they were when it opened. Only reading statements run (SELECT,
DESCRIBE/SHOW, EXPLAIN, PRAGMA, CALL, SET); anything that writes (CREATE, COPY … TO, INSERT,
ATTACH, INSTALL …) is refused before it runs, so a query cannot write files into the work folder
either.
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import json
import sys
from collections.abc import Iterator
from typing import TextIO

import duckdb

from dataset_platform.inspect.errors import InspectError, existing_workdir
from dataset_platform.inspect.table import render
from dataset_platform.storage import warehouse_connection

#: statement types that only read (DESCRIBE, SHOW and SUMMARIZE are SELECTs to DuckDB)
READING = {"SELECT", "EXPLAIN", "PRAGMA", "CALL", "SET", "VARIABLE_SET", "RESET"}
#: rows a table shows unless --max-rows says otherwise
DEFAULT_TABLE_ROWS = 40
FORMATS = ("table", "csv", "json")


def open_warehouse(workdir) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the work folder's warehouse."""
    wd = existing_workdir(workdir)
    if not wd.warehouse.exists():
        raise InspectError(f"{wd.warehouse} does not exist yet: it is written by the first run of the graph "
                           "(`dataset-platform demo` or `dataset-platform run --config sources.yaml`)")
    try:  # (its views' paths resolve against the work folder, whatever the current folder)
        return warehouse_connection(wd, read_only=True)
    except duckdb.Error as e:
        raise InspectError(f"cannot open {wd.warehouse} read-only: {e}. Another program holds it open for "
                           "writing (runs never do): close that program and try again") from None


def check_reading(con: duckdb.DuckDBPyConnection, query: str) -> list:
    """The query's statements, or an error naming the first one that would write."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as e:
        raise InspectError(f"the query does not parse: {_first_line(e)}") from None
    if not statements:
        raise InspectError("the query is empty: give a statement, e.g. "
                           "dataset-platform sql \"SELECT stage, rule, count(*) FROM rejected_documents GROUP BY ALL\"")
    for st in statements:
        kind = st.type.name
        if kind not in READING:
            raise InspectError(
                f"`dataset-platform sql` only reads: a {kind} statement is refused ({st.query.strip()[:60]!r}). "
                "The warehouse holds the platform's views; to keep results, use --csv or --json and redirect "
                "the output to a file, or copy the rows in your own DuckDB database")
    return statements


def run_sql(workdir, query: str, *, fmt: str = "table", max_rows: int | None = None,
            out: TextIO | None = None) -> int:
    """Run ``query`` on the warehouse and print its rows; returns the number of rows the
    result had (all of them, also those beyond ``max_rows``)."""
    out = out or sys.stdout
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if max_rows is not None and max_rows < 0:
        raise InspectError(f"--max-rows {max_rows}: give 0 or more rows")
    con = open_warehouse(workdir)
    try:
        statements = check_reading(con, query)
        try:
            for st in statements[:-1]:
                con.execute(st).fetchall()
            res = con.execute(statements[-1])
            if res.description is None:  # (SET and the like: nothing to show)
                return 0
            header = [d[0] for d in res.description]
            limit = max_rows if max_rows is not None else (DEFAULT_TABLE_ROWS if fmt == "table" else None)
            rows = _rows(res)
            if fmt == "table":
                return _table(header, rows, limit, out)
            return (_csv if fmt == "csv" else _jsonl)(header, rows, limit, out)
        except duckdb.Error as e:
            raise InspectError(_explain(con, e)) from None
    finally:
        con.close()


def _rows(res: duckdb.DuckDBPyConnection, chunk: int = 2048) -> Iterator[tuple]:
    while True:
        batch = res.fetchmany(chunk)
        if not batch:
            return
        yield from batch


def _table(header: list[str], rows: Iterator[tuple], limit: int | None, out: TextIO) -> int:
    shown, total = [], 0
    for r in rows:
        if limit is None or total < limit:
            shown.append(r)
        total += 1
    print(render(header, shown), file=out)
    more = f" ({len(shown)} shown; --max-rows N shows more, --csv/--json all)" if total > len(shown) else ""
    print(f"{total} row{'s' if total != 1 else ''}{more}", file=out)
    return total


def _csv(header: list[str], rows: Iterator[tuple], limit: int | None, out: TextIO) -> int:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    n = 0
    for r in rows:
        if limit is not None and n >= limit:
            break
        w.writerow(["" if v is None else _plain(v) for v in r])
        n += 1
    return n


def _jsonl(header: list[str], rows: Iterator[tuple], limit: int | None, out: TextIO) -> int:
    n = 0
    for r in rows:
        if limit is not None and n >= limit:
            break
        out.write(json.dumps(dict(zip(header, (_plain(v) for v in r))), ensure_ascii=False, default=str) + "\n")
        n += 1
    return n


def _plain(v):
    """A value JSON and CSV can hold (times in ISO 8601, decimals as numbers)."""
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, bytes | bytearray):
        return v.hex()
    return v


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _explain(con: duckdb.DuckDBPyConnection, e: duckdb.Error) -> str:
    msg = str(e).strip()
    if isinstance(e, duckdb.CatalogException):
        try:
            names = [r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                           "ORDER BY 1").fetchall()]
        except duckdb.Error:
            names = []
        if names:
            msg += f"\nTables of the warehouse: {', '.join(names)} (columns: DESCRIBE <table>)"
    elif isinstance(e, duckdb.IOException):
        msg += ("\nA view reads files that are not there: the work folder may have moved or a layer was "
                "removed; a new run of the graph publishes the views again")
    return f"the query failed: {msg}"
