"""Diversity floors and label balance of a released table (one DuckDB pass per measure).

A release can pass every row-level rule and still be wrong as a dataset: one source, one
language or one domain when several were crawled, a label set where nearly every document has
the same value. ``measure`` counts; ``assess`` compares the counts with the configured floors and
limits (``pipeline.quality``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

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
    for name, expr in (("sources", "source"), ("languages", "lang"), ("domains", HOST_SQL)):
        needed = {"sources": "source", "languages": "lang", "domains": "url"}[name]
        if needed not in cols:
            continue
        rows = con.sql(f"SELECT {expr} AS v, count(*) AS n FROM {rel} WHERE {expr} IS NOT NULL AND {expr} <> '' "
                       f"GROUP BY 1 ORDER BY n DESC, v").fetchall()
        out[name] = (float(len(rows)), ", ".join(f"{v} {n}" for v, n in rows[:5]) + (" ..." if len(rows) > 5 else ""))
    for s in label_sets:
        if s not in cols:
            continue
        rows = con.sql(f'SELECT "{s}" AS v, count(*) AS n FROM {rel} WHERE "{s}" IS NOT NULL GROUP BY 1 '
                       "ORDER BY n DESC, v").fetchall()
        total = sum(n for _, n in rows)
        out[f"{s}: values"] = (float(len(rows)), ", ".join(f"{v} {n}" for v, n in rows[:8]))
        if total:
            out[f"{s}: largest share"] = (rows[0][1] / total, f"{rows[0][0]}: {rows[0][1]} of {total}")
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
