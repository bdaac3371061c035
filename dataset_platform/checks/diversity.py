"""Diversity floors and label balance of a released table (one DuckDB pass per measure).

A release can pass every row-level rule and still be wrong as a dataset: one source, one
language or one domain when several were crawled, a label set where nearly every document has
the same value. ``measure`` counts; ``assess`` compares the counts with the configured floors and
limits (``pipeline.quality``).

``measure_files`` gives what ``measure`` gives over the union of Parquet files, from counts kept
per file: a release reuses most of its shards from one version to the next (``release/shards.py``),
so a refresh counts only the shards it wrote (at 1M documents, 0.26 s of DuckDB over the whole
release on every refresh). The counts of a value are sums, so the files' counts add up exactly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.storage import sql_str

#: host of a URL, lower-cased, without port or "www."
HOST_SQL = "regexp_replace(lower(regexp_extract(url, '^[a-z][a-z0-9+.-]*://([^/:?#]+)', 1)), '^www\\.', '')"


@dataclass(frozen=True)
class Finding:
    what: str  # e.g. "sources", "languages", "topic: values", "topic: largest share"
    value: float
    bound: float
    kind: str  # "floor" (value must be >= bound) or "limit" (value must be <= bound)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.value >= self.bound if self.kind == "floor" else self.value <= self.bound


def measure(con: duckdb.DuckDBPyConnection, rel: str, label_sets: list[str]) -> dict[str, tuple[float, str]]:
    """Counts over ``rel`` (columns source, url, lang and each label set's): name -> (value, detail)."""
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
    out: dict[str, tuple[float, str]] = {}
    for name, expr, extra in _measures(cols, label_sets):
        _summarise(out, name, con.sql(f"SELECT {expr} AS v, count(*) AS n FROM {rel} WHERE {expr} IS NOT NULL {extra} "
                                      "GROUP BY 1 ORDER BY n DESC, v").fetchall())
    return out


def _measures(cols: set[str], label_sets: list[str] | tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(name in ``measure``'s output, SQL of the value, the extra filter) of the measures whose
    column is among ``cols``, in ``measure``'s order."""
    out = []
    for name, expr, needed in (("sources", "source", "source"), ("languages", "lang", "lang"),
                               ("domains", HOST_SQL, "url")):
        if needed in cols:
            out.append((name, expr, f"AND {expr} <> ''"))
    out += [(f"{s}: values", f'"{s}"', "") for s in label_sets if s in cols]
    return out


def _summarise(out: dict[str, tuple[float, str]], name: str, rows: list[tuple]) -> None:
    """Put measure ``name`` into ``out`` from its (value, count) rows, largest count first (then
    by value): how many values, the first of them, and a label set's largest share."""
    if not name.endswith(": values"):
        out[name] = (float(len(rows)), ", ".join(f"{v} {n}" for v, n in rows[:5]) + (" ..." if len(rows) > 5 else ""))
        return
    total = sum(n for _, n in rows)
    out[name] = (float(len(rows)), ", ".join(f"{v} {n}" for v, n in rows[:8]))
    if total:
        out[f"{name.removesuffix(': values')}: largest share"] = (rows[0][1] / total,
                                                                 f"{rows[0][0]}: {rows[0][1]} of {total}")


#: bump when what the counts kept per file hold changes
COUNTS_VERSION = "1"


def _file_counts(con: duckdb.DuckDBPyConnection, file: Path, label_sets, where: str, target: Path) -> None:
    """Write the counts of one file: per measure its column has, a row with no value (the
    measure applies) and a row per value with its count."""
    src = f"read_parquet({sql_str(str(file))})"
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    rel = f"(SELECT * FROM {src} WHERE {where})" if "augmented_from" in cols and where else src
    selects = []
    for name, expr, extra in _measures(cols, label_sets):
        selects.append(f"SELECT {sql_str(name)} AS measure, NULL::VARCHAR AS v, 0::BIGINT AS n")
        selects.append(f"SELECT {sql_str(name)}, ({expr})::VARCHAR, count(*)::BIGINT FROM {rel} "
                       f"WHERE {expr} IS NOT NULL {extra} GROUP BY 2")
    if not selects:
        selects = ["SELECT NULL::VARCHAR AS measure, NULL::VARCHAR AS v, 0::BIGINT AS n WHERE false"]
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    con.sql(f"COPY ({' UNION ALL '.join(selects)}) TO {sql_str(str(tmp))} (FORMAT parquet)")
    os.replace(tmp, target)


def measure_files(con: duckdb.DuckDBPyConnection, files: list[tuple[Path, str]], label_sets: list[str],
                  cache: Path, *, where: str = "augmented_from IS NULL") -> dict[str, tuple[float, str]]:
    """``measure`` over the union of ``files`` (each with an identity that changes with its
    content: a release's sha256), rows passing ``where`` (when a file has its column), from counts
    kept per file in ``cache``: only a file not counted before is read. Counts of files no longer
    given are deleted."""
    from dataset_platform.checks.scope import fingerprint

    cache.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(COUNTS_VERSION, list(label_sets), where, duckdb.__version__)
    wanted = []
    for file, identity in files:
        target = cache / f"{fingerprint(identity)}-{fp}.parquet"
        if not target.exists():
            _file_counts(con, file, label_sets, where, target)
        wanted.append(target)
    for old in cache.glob("*.parquet"):
        if old not in wanted:
            old.unlink(missing_ok=True)
    if not wanted:
        return {}
    rows = con.sql(f"SELECT measure, v, sum(n)::BIGINT FROM read_parquet([{', '.join(sql_str(str(p)) for p in wanted)}]) "
                   "GROUP BY ALL").fetchall()
    by: dict[str, list[tuple[str, int]]] = {}
    for name, v, n in rows:
        values = by.setdefault(name, [])
        if v is not None:
            values.append((v, n))
    out: dict[str, tuple[float, str]] = {}
    for name, _e, _x in _measures({"source", "lang", "url", *label_sets}, label_sets):  # (measure's order)
        if name in by:  # (as ORDER BY n DESC, v: VARCHAR compares by bytes, str by code point, alike)
            _summarise(out, name, sorted(by[name], key=lambda vn: (-vn[1], vn[0])))
    return out


def assess(measures: dict[str, tuple[float, str]], *, min_sources: int, min_languages: int, min_domains: int,
           min_label_values: int, max_label_share: float) -> list[Finding]:
    findings = []
    for name, floor in (("sources", min_sources), ("languages", min_languages), ("domains", min_domains)):
        if name in measures:
            findings.append(Finding(name, measures[name][0], floor, "floor", measures[name][1]))
    for key, (value, detail) in measures.items():
        if key.endswith(": values"):
            findings.append(Finding(key, value, min_label_values, "floor", detail))
        elif key.endswith(": largest share"):
            findings.append(Finding(key, round(value, 4), max_label_share, "limit", detail))
    return findings
