"""A layer's profile: text-length histogram, language and source shares (one DuckDB pass).

What a data engineer looks at first when a layer changes: how long the documents are, which
languages and which sources it holds. Computed over the whole table in SQL (no rows in Python),
so it costs one scan of the ``text`` lengths and two small group-bys; for a layer stored in parts,
over the lengths, languages and sources kept per part (``parts_profile_sql``), so a refresh reads
the texts of the parts it wrote only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from dataset_platform.storage import sql_str

#: upper bounds (characters, exclusive) of the length buckets; the last bucket is open
LENGTH_BOUNDS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
TOP = 8  # languages / sources listed by name; the rest are summed as "other"


@dataclass
class Profile:
    rows: int
    #: (bucket label, documents) in length order, empty buckets included
    lengths: list[tuple[str, int]] = field(default_factory=list)
    length_p10: float | None = None
    length_median: float | None = None
    length_p90: float | None = None
    #: (value, documents), most frequent first, at most TOP + an "other" row
    languages: list[tuple[str, int]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)
    distinct_languages: int = 0
    distinct_sources: int = 0


def _bucket_labels() -> list[str]:
    def k(n: int) -> str:
        return f"{n // 1000}k" if n >= 1000 else str(n)

    lows = (0, *LENGTH_BOUNDS)
    return [f"{k(lo)}-{k(hi)}" for lo, hi in zip(lows, LENGTH_BOUNDS)] + [f"{k(LENGTH_BOUNDS[-1])}+"]


def _shares(con: duckdb.DuckDBPyConnection, rel: str, column: str) -> tuple[list[tuple[str, int]], int]:
    rows = con.sql(
        f'SELECT coalesce(CAST("{column}" AS VARCHAR), \'(none)\') AS v, count(*) AS n FROM {rel} '
        "GROUP BY 1 ORDER BY n DESC, v"
    ).fetchall()
    top = [(str(v), int(n)) for v, n in rows[:TOP]]
    rest = sum(int(n) for _, n in rows[TOP:])
    return top + ([("other", rest)] if rest else []), len(rows)


def profile(con: duckdb.DuckDBPyConnection, rel: str) -> Profile:
    """Profile of relation ``rel`` (a table name or parenthesised query) with a ``text`` or an
    ``n_chars`` column and, when present, ``lang`` and ``source``."""
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
    if "text" not in cols and "n_chars" not in cols:
        raise ValueError(f"cannot profile {rel}: no text column, nor n_chars (columns: {sorted(cols)})")
    # one scan: the quantiles and every bucket's count (a NULL text counts as length 0); a layer
    # that records its texts' lengths (n_chars) is profiled without reading a text
    length = "n_chars" if "n_chars" in cols else "length(text)"
    bounds = (0, *LENGTH_BOUNDS)
    buckets = ", ".join(
        f"count(*) FILTER (WHERE n >= {lo}" + (f" AND n < {hi})" if hi is not None else ")")
        for lo, hi in zip(bounds, (*LENGTH_BOUNDS, None)))
    ((rows, p10, p50, p90, *counts),) = con.sql(
        f"SELECT count(*), quantile_cont(len, 0.1), median(len), quantile_cont(len, 0.9), "
        f"{buckets} FROM (SELECT {length} AS len, coalesce({length}, 0) AS n FROM {rel})"
    ).fetchall()
    out = Profile(rows=int(rows), lengths=[(label, int(n)) for label, n in zip(_bucket_labels(), counts)],
                  length_p10=None if p10 is None else float(p10), length_median=None if p50 is None else float(p50),
                  length_p90=None if p90 is None else float(p90))
    if "lang" in cols:
        out.languages, out.distinct_languages = _shares(con, rel, "lang")
    if "source" in cols:
        out.sources, out.distinct_sources = _shares(con, rel, "source")
    return out


def parts_profile_sql(con: duckdb.DuckDBPyConnection, files: list[Path], cache: Path) -> str | None:
    """FROM-able SQL with ``n_chars`` and, when the parts have them, ``lang`` and ``source`` of
    every row of the Parquet ``files`` (the parts of a layer): for :func:`profile`, without
    reading a text of a part already seen. Each part's columns are kept in ``cache`` under a
    name holding the part's size and mtime (parts are replaced whole, by rename), so a rewritten
    part is read again and a part left as it was (or copied with its mtime) is not. None when there are no files."""
    if not files:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    out = []
    for f in files:
        st = f.stat()
        stem = "__".join(f.relative_to(f.parents[2]).parts[:2]) if len(f.parents) > 2 else f.stem
        name = f"{stem}__{st.st_size}-{st.st_mtime_ns}.parquet"
        target = cache / name
        if not target.exists():
            src = f"read_parquet({sql_str(str(f))})"
            cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
            pick = ["length(text)::INTEGER AS n_chars" if "text" in cols else "n_chars"]
            pick += [c for c in ("lang", "source") if c in cols]
            tmp = cache / f".{name}.{os.getpid()}.tmp"
            con.sql(f"COPY (SELECT {', '.join(pick)} FROM {src}) TO {sql_str(str(tmp))} (FORMAT parquet)")
            os.replace(tmp, target)
        wanted.add(name)
        out.append(target)
    for old in cache.glob("*.parquet"):  # parts rewritten or gone
        if old.name not in wanted:
            old.unlink(missing_ok=True)
    listed = ", ".join(sql_str(str(p)) for p in out)
    return f"read_parquet([{listed}], union_by_name=true)"


def bar(share: float, width: int = 20) -> str:
    """A text bar for a share in [0, 1] (renders in any Markdown view, the Dagster UI included)."""
    full = round(max(0.0, min(1.0, share)) * width)
    return "█" * full + "·" * (width - full)
