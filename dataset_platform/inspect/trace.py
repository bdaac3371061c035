"""``dataset-platform trace``: one document's journey through a work folder.

For a document id, a URL or a text snippet: the batches that considered it and their crawl
outcome (``crawl_log``), the stored page (``raw_pages``), each layer it reached, the rule and
value that dropped it (the parts' ``rejected.parquet``, ``layers/rejected/dedup.parquet``), the
keeper it duplicates and with which similarity (``duplicate_clusters``), its labels with their
source and confidence (the label stage's ``details.parquet``), human annotations, its split
(``split_assignments``) and every release version that contains it (each version's
``index.parquet``).

How it stays fast as the corpus grows (every read is a Parquet file read directly, never the
warehouse views, and never a text or HTML column, except for a snippet search):

* A URL is turned into ids without reading anything: an id is ``md5(source + " " + url)[:16]``
  (``ingest/load.ID_SQL``), one candidate per source of the work folder. Only a URL recorded in
  another form (no candidate id found) falls back to a scan of ``crawl_log``'s url columns.
* The id's batches come from ``crawl_log`` (an id-column scan: 16 bytes per considered URL;
  no text). The raw layer's manifest names the parts of those batches, and a part's key is the
  same in every layer (``<source>/<part>``): each layer is then read in that one part only, not
  in all of its parts. The cost of a trace is one narrow scan of the id column of ``crawl_log``
  plus a constant number of part reads, whatever the number of parts.
* Global files (``duplicate_clusters`` by doc_id, dedup's rejects, ``split_assignments``) are
  in id order, so their row groups' min/max statistics let DuckDB skip all but one row group once
  they outgrow one (100 000 rows). The duplicates a keeper has (``keeper_id``), the keeper's URL
  and each release version's ``index.parquet`` are narrow id-column scans.
* A text snippet is the one full scan: ``contains(text, snippet)`` over the extracted layer's
  text (then the cleaned layer's normalised text when the extracted text has no match),
  sorted so the same matches are listed every time: its cost grows with the corpus (on the
  100 000-document benchmark, two busy cores: 0.5 s with a match, 1.2 s when neither layer has
  one; ``--json`` reports ``search_seconds``). Ids and URLs are the fast way in.

Nothing here writes to the work folder or imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from dataset_platform.contracts.schema import BATCHED_LAYERS
from dataset_platform.inspect.errors import InspectError, existing_workdir
from dataset_platform.inspect.table import cell, fmt_float
from dataset_platform.storage import sql_str
from dataset_platform.workdir import Workdir

#: the layers computed by the registered stages, in graph order (the contract's, without importing
#: the stages: a trace must start fast)
STAGE_LAYERS = tuple(name for name in BATCHED_LAYERS if name != "raw_pages")
#: columns never read by a trace (large; a trace shows what happened, not the text)
HEAVY = ("text", "html", "headers", "quality", "annotations")
#: documents traced in full when a snippet or URL matches several
TRACE_FIRST = 3
#: matches a snippet search lists
LIST_MATCHES = 10
ID_RE = re.compile(r"^[0-9a-f]{16}$")
#: where a journey finds a document: none of them, and the work folder does not know it
KNOWN_BY = ("crawl_log", "raw_pages", "layers", "dropped", "duplicate_of", "duplicates", "human_annotations", "split",
            "releases")


@dataclass
class _Reader:
    con: duckdb.DuckDBPyConnection

    def rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        res = self.con.execute(sql, list(params))
        names = [d[0] for d in res.description]
        return [dict(zip(names, r)) for r in res.fetchall()]


def _files_sql(files: Sequence[Path]) -> str:
    return "[" + ", ".join(sql_str(f) for f in files) + "]"


def _light(files: Sequence[Path]) -> str:
    """read_parquet over ``files`` with every column but the heavy ones, and the file name."""
    excluded = ", ".join(f"'{c}'" for c in HEAVY)
    return (f"(SELECT COLUMNS(lambda c: c NOT IN ({excluded})) FROM read_parquet({_files_sql(files)}, filename = true, "
            "union_by_name = true))")


def doc_id(source: str, url: str) -> str:
    """A document's id (as ``ingest/load.ID_SQL`` computes it)."""
    return hashlib.md5(f"{source} {url}".encode()).hexdigest()[:16]


def sources(wd: Workdir) -> list[str]:
    """The sources the work folder holds batches of."""
    names = {p.name for p in (wd.layers / "crawl_log").glob("*") if p.is_dir()}
    names |= {p.name for p in (wd.layers / "raw_pages").glob("*") if p.is_dir() and not p.name.startswith(".")}
    return sorted(names)


# ------------------------------------------------------------------ resolving what the user gave


def resolve(wd: Workdir, r: _Reader, needle: str) -> dict:
    """The ids ``needle`` names: ``{"kind", "ids", "matches", "search_seconds"}``."""
    needle = needle.strip()
    if not needle:
        raise InspectError("give a document id (16 hex digits), a URL or a text snippet to trace")
    if ID_RE.match(needle.lower()):
        return {"kind": "id", "ids": [needle.lower()], "matches": []}
    if re.match(r"^[a-z][a-z0-9+.-]*://", needle, re.I):
        ids = [doc_id(s, needle) for s in sources(wd)]
        log = wd.layer_files("crawl_log")
        rows = r.rows(f"SELECT * EXCLUDE (filename) FROM {_light(log)} WHERE id IN ({', '.join('?' for _ in ids)}) "
                      "ORDER BY id, crawl_id, seq", ids) if log and ids else []
        found = list(dict.fromkeys(x["id"] for x in rows))
        if not found:
            found += _raw_ids(wd, r, ids)
        if not found and log:  # recorded in another form (a redirect target, another spelling)
            found = [x["id"] for x in r.rows(f"SELECT DISTINCT id FROM read_parquet({_files_sql(log)}) "
                                             "WHERE url = ? OR fetch_url = ? ORDER BY id", [needle, needle])]
        # (the crawl_log rows read here are the journeys' first step: not read twice)
        return {"kind": "url", "ids": found, "matches": [],
                "_log": {i: [x for x in rows if x["id"] == i] for i in found if any(x["id"] == i for x in rows)}}
    return search_text(wd, r, needle)


def _raw_ids(wd: Workdir, r: _Reader, ids: list[str]) -> list[str]:
    files = wd.layer_files("raw_pages")
    if not files or not ids:
        return []
    return [x["id"] for x in r.rows(f"SELECT DISTINCT id FROM read_parquet({_files_sql(files)}) WHERE id IN "
                                    f"({', '.join('?' for _ in ids)}) ORDER BY id", ids)]


def search_text(wd: Workdir, r: _Reader, snippet: str) -> dict:
    """Documents whose text contains ``snippet`` (exact, case-sensitive): the extracted layer's
    text first (what the page said), then the cleaned layer's (normalised, PII redacted: what a
    release holds) when the first has no match. A full scan of the text column; the first matches
    by source and URL are kept."""
    t0 = time.perf_counter()
    matches: list[dict] = []
    searched = []
    for layer in ("extracted_documents", "cleaned_documents"):
        files = wd.layer_files(layer)
        if not files:
            continue
        searched.append(layer)
        matches = r.rows(f"SELECT id, source, url, title FROM read_parquet({_files_sql(files)}) "
                         f"WHERE contains(text, ?) ORDER BY source, url, id LIMIT {LIST_MATCHES + 1}", [snippet])
        if matches:
            break
    return {"kind": "text", "ids": [m["id"] for m in matches[:TRACE_FIRST]], "matches": matches[:LIST_MATCHES],
            "more": len(matches) > LIST_MATCHES, "searched": searched,
            "search_seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------ one document


def journey(wd: Workdir, r: _Reader, did: str, log_rows: list[dict] | None = None) -> dict:
    """Everything the work folder knows about document ``did`` (``log_rows``: its crawl_log rows,
    when they were read already)."""
    j: dict = {"id": did}
    log = wd.layer_files("crawl_log")
    if log_rows is None:
        log_rows = r.rows(f"SELECT * EXCLUDE (filename) FROM {_light(log)} WHERE id = ? ORDER BY crawl_id, seq",
                          [did]) if log else []
    src = {x["source"] for x in log_rows}
    manifests = {s: _raw_manifest(wd, s) for s in sorted(src)}
    landed = {(s, b): i for s, m in manifests.items() for i, b in enumerate(m.get("extra", {}).get("merged", []))}
    # in landing order (the raw manifest's list; a dump's batch id is a hash, not a time)
    j["crawl_log"] = sorted(log_rows, key=lambda x: (landed.get((x["source"], x["crawl_id"]), len(landed)),
                                                     x["crawl_id"], x["seq"]))
    batches = {x["crawl_id"] for x in log_rows}
    raw_files = _raw_parts(wd, manifests, batches)
    raw = r.rows(f"SELECT * FROM {_light(raw_files)} WHERE id = ?", [did]) if raw_files else []
    if not raw:  # (a batch the log does not name: every raw part of the candidate sources)
        everything = [f for s in (src or sources(wd)) for f in sorted(wd.raw_source(s).glob("*/data.parquet"))]
        if everything and everything != raw_files:
            raw = r.rows(f"SELECT * FROM {_light(everything)} WHERE id = ?", [did])
    key = None
    if raw:
        row = raw[0]
        part = Path(row.pop("filename")).parent
        key = f"{part.parent.name}/{part.name}"
        j["raw_pages"] = {"part": key, **row}
    else:
        j["raw_pages"] = None
    j["layers"], j["dropped"] = [], None
    labelled_part = None
    for layer in STAGE_LAYERS:
        part = wd.layer_dir(layer) / key if key else None
        data = part / "data.parquet" if part else None
        if data is None or not data.exists():
            break
        got = r.rows(f"SELECT * EXCLUDE (filename) FROM {_light([data])} WHERE id = ?", [did])
        rejected = part / "rejected.parquet"
        if not got and rejected.exists():
            rej = r.rows(f"SELECT stage, rule, value FROM read_parquet({sql_str(rejected)}) WHERE id = ?", [did])
            if rej:
                j["dropped"] = {"layer": layer, **rej[0]}
        if not got and j["dropped"] is None and layer == "deduplicated_documents":
            j["dropped"] = _dedup_reject(wd, r, did)
        if not got:
            break
        j["layers"].append({"layer": layer, "part": key, **got[0]})
        if layer == "labelled_documents":
            labelled_part = part
    j["duplicate_of"], j["duplicates"] = _clusters(wd, r, did)
    j["labels"] = _labels(r, labelled_part, did)
    j["human_annotations"] = _rows_of(r, wd.layer("human_annotations"), "doc_id", did)
    sa = _rows_of(r, wd.split_assignments, "id", did)
    j["split"] = sa[0] if sa else None
    j["releases"] = _releases(wd, r, did)
    j["verdict"] = verdict(j)
    return j


def _raw_manifest(wd: Workdir, source: str) -> dict:
    try:
        return json.loads((wd.raw_source(source) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _raw_parts(wd: Workdir, manifests: dict[str, dict], batches: set[str]) -> list[Path]:
    """The raw parts holding the given batches (from each source's manifest: no data read)."""
    out = []
    for s, manifest in sorted(manifests.items()):
        for k, info in sorted(manifest.get("parts", {}).items()):
            if (info.get("counters") or {}).get("batch") in batches and (wd.raw_source(s) / k / "data.parquet").exists():
                out.append(wd.raw_source(s) / k / "data.parquet")
    return out


def _rows_of(r: _Reader, path: Path, col: str, did: str) -> list[dict]:
    if not path.exists():
        return []
    return r.rows(f"SELECT * FROM read_parquet({sql_str(path)}) WHERE {col} = ?", [did])


def _dedup_reject(wd: Workdir, r: _Reader, did: str) -> dict | None:
    rows = _rows_of(r, wd.rejects("dedup"), "id", did)
    return {"layer": "deduplicated_documents", "stage": rows[0]["stage"], "rule": rows[0]["rule"],
            "value": rows[0]["value"]} if rows else None


def _clusters(wd: Workdir, r: _Reader, did: str) -> tuple[dict | None, list[dict]]:
    """The keeper ``did`` duplicates (with its URL), and the duplicates ``did`` is the keeper of."""
    path = wd.layer("duplicate_clusters")
    if not path.exists():
        return None, []
    mine = r.rows(f"SELECT keeper_id, kind, similarity, cluster_id FROM read_parquet({sql_str(path)}) "
                  "WHERE doc_id = ?", [did])
    of = None
    if mine:
        of = dict(mine[0])
        files = wd.layer_files("deduplicated_documents")
        keeper = r.rows(f"SELECT url, source FROM read_parquet({_files_sql(files)}) WHERE id = ?",
                        [of["keeper_id"]]) if files else []
        of["keeper_url"] = keeper[0]["url"] if keeper else None
    dups = r.rows(f"SELECT doc_id, kind, similarity FROM read_parquet({sql_str(path)}) WHERE keeper_id = ? "
                  "ORDER BY similarity DESC, doc_id", [did])
    return of, dups


def _labels(r: _Reader, part: Path | None, did: str) -> list[dict]:
    """Per label set: the value, its source and confidence, and what the rules and model said."""
    if part is None or not (part / "details.parquet").exists():
        return []
    return [{k: v for k, v in x.items() if k != "id"} for x in
            r.rows(f"SELECT * FROM read_parquet({sql_str(part / 'details.parquet')}) WHERE id = ? ORDER BY label_set",
                   [did])]


def _releases(wd: Workdir, r: _Reader, did: str) -> list[dict]:
    """Every release version holding ``did`` (or augmented copies of it), newest first."""
    out = []
    for dataset in sorted(p for p in wd.releases.glob("*") if p.is_dir()):
        versions = _versions(dataset)
        indexes = [dataset / v / "index.parquet" for v in versions if (dataset / v / "index.parquet").exists()]
        if not indexes:
            continue
        hits = r.rows(f"SELECT filename, split, _shard AS shard, augmented_from FROM read_parquet("
                      f"{_files_sql(indexes)}, filename = true) WHERE id = ? OR augmented_from = ?", [did, did])
        latest = (dataset / "LATEST").read_text(encoding="utf-8").strip() if (dataset / "LATEST").exists() else None
        by_version: dict[str, dict] = {}
        for h in hits:
            v = Path(h["filename"]).parent.name
            e = by_version.setdefault(v, {"dataset": dataset.name, "version": v, "latest": v == latest,
                                          "split": None, "shard": None, "augmented_copies": 0,
                                          "path": str(dataset / v)})
            if h["augmented_from"] == did:
                e["augmented_copies"] += 1
            else:
                e["split"], e["shard"] = h["split"], h["shard"]
        out += [by_version[v] for v in versions if v in by_version]
    return out


def _versions(dataset: Path) -> list[str]:
    """A dataset's versions, newest first: LATEST and its chain of previous versions, then any
    other (by modification time)."""
    names = {p.name for p in dataset.iterdir() if p.is_dir() and not p.name.startswith(".")}
    chain: list[str] = []
    v = (dataset / "LATEST").read_text(encoding="utf-8").strip() if (dataset / "LATEST").exists() else None
    while v and v in names and v not in chain:
        chain.append(v)
        try:
            v = json.loads((dataset / v / "manifest.json").read_text(encoding="utf-8")).get("previous_version")
        except (OSError, ValueError):
            break
    rest = sorted(names - set(chain), key=lambda n: (-(dataset / n).stat().st_mtime, n))
    return chain + rest


def verdict(j: dict) -> str:
    """One line: where the document is now, or why it is not in the release."""
    latest = [x for x in j["releases"] if x["latest"] and x["split"]]
    if latest:
        x = latest[0]
        return f"released: {x['dataset']} {x['version']} (the current release), split {x['split']}"
    if j["dropped"]:
        d = j["dropped"]
        what = f"dropped by stage {d['stage']}: {d['rule']}"
        if d.get("value") not in (None, ""):
            what += f" = {d['value']}"
        if j["duplicate_of"]:
            k = j["duplicate_of"]
            what += f" ({k['kind']} duplicate of {k['keeper_id']}, similarity {fmt_float(float(k['similarity']))})"
        return what
    if j["raw_pages"] is None:
        if j["crawl_log"]:
            last = j["crawl_log"][-1]
            detail = f" ({last['detail']})" if last.get("detail") else ""
            return f"never stored: the newest batch's crawl outcome is {last['outcome']}{detail}"
        return "not found in this work folder"
    reached = j["layers"][-1]["layer"] if j["layers"] else "raw_pages"
    older = [x for x in j["releases"] if x["split"]]
    if older:
        return f"in {reached}; not in the current release (was in {older[0]['version']})"
    return f"reached {reached}; in no release yet"


# ------------------------------------------------------------------ entry point


def trace(workdir, needle: str) -> dict:
    """Resolve ``needle`` and trace the first documents it names."""
    wd = existing_workdir(workdir)
    t0 = time.perf_counter()
    con = duckdb.connect(":memory:")
    try:
        r = _Reader(con)
        found = resolve(wd, r, needle)
        prefetched = found.pop("_log", {})
        docs = [journey(wd, r, d, prefetched.get(d)) for d in found["ids"][:TRACE_FIRST]]
        docs = [j for j in docs if any(j[k] for k in KNOWN_BY)]  # (an id nothing here knows: not found)
    except duckdb.Error as e:
        raise InspectError(f"reading the work folder {wd.root} failed: {e}") from None
    finally:
        con.close()
    return {"query": needle, **found, "documents": docs, "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------ text output


def render_text(res: dict) -> str:
    lines: list[str] = []
    if res["kind"] == "text":
        n = len(res["matches"])
        where = " then ".join(res.get("searched") or []) or "no layer with texts yet"
        if n == 0:
            return f"no document's text contains {res['query']!r} (searched {where}, {res['search_seconds']} s)"
        if n > 1:
            lines.append(f"{n}{'+' if res.get('more') else ''} documents contain {res['query']!r} (searched {where}, "
                         f"{res['search_seconds']} s); tracing the first {min(n, TRACE_FIRST)}, give a longer snippet, "
                         "an id or a URL to narrow down:")
            lines += [f"  {m['id']}  {cell(m['url'], 70)}  {cell(m['title'], 50)}" for m in res["matches"]]
            lines.append("")
    if not res["documents"]:
        return f"no document found for {res['query']!r}: give a document id (16 hex digits), a URL as crawled, or a text snippet"
    for j in res["documents"]:
        lines += _render_one(j) + [""]
    return "\n".join(lines).rstrip()


def _render_one(j: dict) -> list[str]:
    raw = j["raw_pages"]
    url = raw["url"] if raw else (j["crawl_log"][-1]["url"] if j["crawl_log"] else None)
    out = [f"document {j['id']}  {url or ''}"]
    title = next((x.get("title") for x in [*j["layers"], raw or {}] if x.get("title")), None)
    if title:
        out.append(f"  title: {cell(title, 100)}")
    out.append(f"  => {j['verdict']}")
    if j["crawl_log"]:
        out.append("  crawl_log (each batch that considered it):")
        for x in j["crawl_log"]:
            bits = [f"{x['source']}/{x['crawl_id']}", f"#{x['seq']}", f"outcome {x['outcome']}"]
            bits += [f"HTTP {x['status']}"] if x.get("status") is not None else []
            bits += [f"detail {x['detail']}"] if x.get("detail") else []
            bits += [f"depth {x['depth']}"] if x.get("depth") is not None else []
            bits += [f"from {x['referer']}"] if x.get("referer") else []
            out.append("    " + ", ".join(str(b) for b in bits))
    if raw:
        out.append(f"  raw_pages: part {raw['part']}, batch {raw.get('crawl_id')}, "
                   f"{raw.get('content_type') or '?'}, {raw.get('body_bytes') or 0} bytes")
    for x in j["layers"]:
        facts = [f"{k} {cell(x[k], 40)}" for k in ("lang", "n_words", "n_chars", "extractor", "content_hash")
                 if x.get(k) is not None]
        out.append(f"  {x['layer']:26s} reached ({', '.join(facts)})" if facts else f"  {x['layer']:26s} reached")
    if j["dropped"]:
        d = j["dropped"]
        out.append(f"  {d['layer']:26s} DROPPED by {d['stage']}: rule {d['rule']}, value {d['value']}")
    if j["duplicate_of"]:
        k = j["duplicate_of"]
        out.append(f"  duplicate ({k['kind']}) of keeper {k['keeper_id']} {k.get('keeper_url') or ''}, similarity "
                   f"{fmt_float(float(k['similarity']))}")
    if j["duplicates"]:
        shown = ", ".join(f"{d['doc_id']} ({d['kind']} {fmt_float(float(d['similarity']))})" for d in j["duplicates"][:5])
        out.append(f"  keeper of {len(j['duplicates'])} duplicate(s): {shown}{', …' if len(j['duplicates']) > 5 else ''}")
    for lab in j["labels"]:
        extra = {k: v for k, v in lab.items() if k not in ("label_set", "value", "source", "confidence") and v is not None}
        said = ", ".join(f"{k} {cell(v, 30)}" for k, v in extra.items())
        out.append(f"  label {lab['label_set']} = {lab['value']} (source {lab['source']}, confidence "
                   f"{cell(lab['confidence'])}{'; ' + said if said else ''})")
    for a in j["human_annotations"]:
        out.append(f"  human annotation: {a['label_set']} = {a['value']} by {a['annotator']} "
                   f"({a.get('updated_at')}, {Path(str(a.get('file') or '')).name})")
    if j["split"]:
        out.append(f"  split {j['split']['split']} (group {cell(j['split'].get('group_key'), 60)})")
    for v in j["releases"]:
        tag = " (current)" if v["latest"] else ""
        what = f"split {v['split']}, shard {v['shard']}" if v["split"] else "only as augmented copies"
        if v["augmented_copies"]:
            what += f", {v['augmented_copies']} augmented copies"
        out.append(f"  release {v['dataset']} {v['version']}{tag}: {what}")
    return out
