"""Takedown requests: documents people and publishers asked to have removed, in every layer and
every published version.

Requests come from ``takedowns.yaml`` (``pipeline.takedowns``, relative to sources.yaml) and from
the files dropped into ``<workdir>/inbox/takedowns/`` (YAML or JSON, same shape). Each request
has an ``id``, a ``date`` (YYYY-MM-DD) and exactly one target::

    requests:
      - {id: TD-1, date: 2026-11-30, url: "https://example.org/a/page"}
      - {id: TD-2, date: 2026-11-30, url_prefix: "https://example.org/private/"}
      - {id: TD-3, date: 2026-11-30, domain: example.net}          # and its subdomains
      - {id: TD-4, date: 2026-11-30, doc_id: 0123456789abcdef}
      - {id: TD-5, date: 2026-11-30, content_hash: <deduplicated_documents.content_hash>}
      - {id: TD-6, date: 2026-11-30, text: "Jane Q. Example"}       # literal, case-insensitive
      - {id: TD-7, date: 2026-11-30, regex: "jane\\s+q\\.?\\s+example"}  # RE2, case-insensitive

How they are applied (:func:`enforce`, called by the runner for every per-batch layer before it
commits): a cheap SQL filter over a part's rows, not a stage. It is not part of any chain, so a
new request costs a scan of the layers once (ids, URLs, texts) and rewrites only the parts that
hold a matching document; the layers below drop those documents by the runner's ordinary
completion (their input part lost ids). The first layer where a request can match is
``extracted_documents`` (URL, domain, id, text, content hash of the normalised text), so that is
where its documents are rejected (``rejected_documents``: stage ``takedown``, rule
``takedown.<kind>``, value the request id); a later layer only catches what appears there first.

The raw layer keeps the row of a removed document (the crawl log and the crawler's conditional
requests still account for its URL) but loses its content (title, text, html, headers), rewritten
in place under the raw layer's lock; should extraction be recomputed later, what it rejects of
such a row is recorded as the takedown again. The landed batch files under ``raw/<source>/`` are
not rewritten.

Withdrawing a request does not bring its documents back (they stay in the registry): delete the
registry and the layers' manifests to rebuild without it.

Near-duplicates go with a removed document: documents in its duplicate cluster (dedup's
``duplicate_clusters`` of the previous run), and any document written later whose MinHash
signature (dedup's parameters) is within dedup's threshold of a removed text
(``takedown.near_duplicate``). Every removed id is kept in ``layers/takedowns/removed.parquet``
with its request and the signature of its text (never the text): a page crawled again, or a
near-duplicate arriving later, stays out.

Nothing here imports Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from dataset_platform.stages.dedup.stage import CONTENT_HASH_SQL  # dedup's normalised-text hash
from dataset_platform.storage import sql_str, write_parquet
from dataset_platform.storage.batched import DATA, REJECTED, BatchedLayer, ids_fingerprint

NAME = "takedown"
KINDS = ("url", "url_prefix", "domain", "doc_id", "content_hash", "text", "regex")
#: the default file name of ``pipeline.takedowns`` (a missing file of this name means no requests)
DEFAULT_FILE = "takedowns.yaml"


class TakedownError(ValueError):
    """A takedown file that cannot be read or is not valid."""


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    date: dt.date
    reason: str | None = None
    url: str | None = None
    url_prefix: str | None = None
    domain: str | None = None
    doc_id: str | None = None
    content_hash: str | None = None
    text: str | None = None
    regex: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("id must not be empty")
        return v

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, v):
        if isinstance(v, dt.date):
            return v
        if not isinstance(v, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v.strip()):
            raise ValueError(f"date must be YYYY-MM-DD, got {v!r}")
        return v.strip()

    @model_validator(mode="after")
    def _one_target(self) -> Request:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one target is needed (one of {', '.join(KINDS)}); "
                             f"got {', '.join(given) if given else 'none'}")
        value = getattr(self, given[0])
        if not str(value).strip():
            raise ValueError(f"{given[0]} must not be empty")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as e:
                raise ValueError(f"regex {self.regex!r} does not compile: {e}") from None
        if self.domain is not None and ("/" in self.domain or ":" in self.domain):
            raise ValueError(f"domain {self.domain!r}: give a host name only (example.org), or use url_prefix")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def target(self) -> str:
        return str(getattr(self, self.kind))


@dataclass(frozen=True)
class Takedowns:
    requests: tuple[Request, ...] = ()
    files: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.requests)

    def fingerprint(self) -> str:
        if not self.requests:
            return ""
        data = sorted((r.model_dump(mode="json") for r in self.requests), key=lambda d: d["id"])
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]

    def by_id(self) -> dict[str, Request]:
        return {r.id: r for r in self.requests}


def inbox(root: Path) -> Path:
    """``<workdir>/inbox/takedowns/``: takedown files dropped there are applied at the next
    refresh (and trigger one: ``defs/automation.py``); they stay there (they are the record)."""
    from dataset_platform.config import TAKEDOWNS_INBOX

    return Path(root) / "inbox" / TAKEDOWNS_INBOX


def inbox_files(root: Path) -> list[Path]:
    folder = inbox(root)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in (".yaml", ".yml", ".json"))


def parse_file(path: Path) -> list[Request]:
    """The requests of one takedown file (a mapping with ``requests:``, or a list of requests)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TakedownError(f"{path}: cannot read: {e}") from None
    except yaml.YAMLError as e:
        raise TakedownError(f"{path}: not valid YAML/JSON: {e}") from None
    if data is None:
        return []
    items = data.get("requests") if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"requests"}:
        raise TakedownError(f"{path}: unknown top-level keys {sorted(set(data) - {'requests'})}; expected 'requests:'")
    if not isinstance(items, list):
        raise TakedownError(f"{path}: expected a list of requests under 'requests:'")
    out, errors = [], []
    for i, item in enumerate(items):
        where = f"{path}: requests[{i}]" + (f" (id {item.get('id')!r})" if isinstance(item, dict) and "id" in item else "")
        if not isinstance(item, dict):
            errors.append(f"{where}: expected a mapping with id, date and one target")
            continue
        try:
            out.append(Request.model_validate(item))
        except ValidationError as e:
            for err in e.errors():
                loc = ".".join(str(x) for x in err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                errors.append(f"{where}: {loc + ': ' if loc else ''}{msg}")
    if errors:
        raise TakedownError("\n".join(errors))
    return out


def config_file(cfg) -> Path | None:
    """The takedowns file the config names (None: no field, or the default file is absent)."""
    name = getattr(cfg.pipeline, "takedowns", None) if cfg is not None else None
    if not name:
        return None
    p = Path(name)
    if name == DEFAULT_FILE:  # (a config not loaded from a file: no folder to find the default in)
        return None
    if not p.exists():
        if p.name == DEFAULT_FILE:
            return None
        raise TakedownError(f"pipeline.takedowns: {p} not found (the path is relative to sources.yaml); "
                            "create it or remove the setting")
    return p


def load(cfg, root: Path | None) -> Takedowns:
    """Every request of the config's takedowns file and of the inbox, validated together (ids
    unique across files)."""
    files = [f for f in [config_file(cfg)] if f is not None] + (inbox_files(root) if root is not None else [])
    reqs, seen, errors = [], {}, []
    for f in files:
        for r in parse_file(f):
            if r.id in seen:
                errors.append(f"{f}: request id {r.id!r} is used twice (also in {seen[r.id]}); ids must be unique")
                continue
            seen[r.id] = f
            reqs.append(r)
    if errors:
        raise TakedownError("\n".join(errors))
    return Takedowns(tuple(sorted(reqs, key=lambda r: r.id)), tuple(str(f) for f in files))


# ------------------------------------------------------------------ matching in SQL


def _host_sql(col: str) -> str:
    return f"lower(regexp_extract({col}, '^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?([^:/?#]+)', 1))"


def _condition(r: Request, columns: set[str]) -> str | None:
    """SQL true for the rows of a relation with ``columns`` that request ``r`` targets (None when
    the relation cannot show it)."""
    v = sql_str(r.target.strip())
    if r.kind in ("url", "url_prefix", "domain") and "url" not in columns:
        return None
    if r.kind in ("text", "regex", "content_hash") and "text" not in columns and "content_hash" not in columns:
        return None
    if r.kind == "url":
        return f"url = {v}"
    if r.kind == "url_prefix":
        return f"starts_with(url, {v})"
    if r.kind == "domain":
        d = sql_str(r.target.strip().lower().rstrip("."))
        return f"({_host_sql('url')} = {d} OR ends_with({_host_sql('url')}, '.' || {d}))"
    if r.kind == "doc_id":
        return f"id = {v}"
    if r.kind == "content_hash":
        return f"content_hash = {v}" if "content_hash" in columns else f"{CONTENT_HASH_SQL} = {v}"
    if "text" not in columns:
        return None
    fields = ["text"] + (["title"] if "title" in columns else [])
    if r.kind == "text":
        needle = sql_str(r.target.lower())
        return "(" + " OR ".join(f"contains(lower(coalesce({f}, '')), {needle})" for f in fields) + ")"
    return "(" + " OR ".join(f"regexp_matches(coalesce({f}, ''), {v}, 'i')" for f in fields) + ")"


def match_sql(takedowns: Takedowns, rel: str, columns: set[str]) -> str | None:
    """(id, rule, value) of the rows of ``rel`` some request targets; the first request by id
    wins for a row several target. None when no request can match ``columns``."""
    arms = []
    for r in takedowns.requests:
        cond = _condition(r, columns)
        if cond is not None:
            arms.append(f"SELECT id, 'takedown.{r.kind}' AS rule, {sql_str(r.id)} AS value FROM {rel} WHERE {cond}")
    if not arms:
        return None
    return ("SELECT id, arg_min(rule, value) AS rule, min(value) AS value FROM ("
            + " UNION ALL ".join(arms) + ") GROUP BY id")


# ------------------------------------------------------------------ the registry of removed documents


def registry_file(root: Path) -> Path:
    return Path(root) / "layers" / "takedowns" / "removed.parquet"


def _registry_sql(root: Path) -> str:
    f = registry_file(root)
    if f.exists():
        return f"read_parquet({sql_str(f)})"
    return "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS rule, NULL::VARCHAR AS value, NULL::BLOB AS sig WHERE false)"


def removed_ids_sql(root: Path) -> str:
    """FROM-able (id, rule, value) of every document a takedown removed."""
    return f"(SELECT id, rule, value FROM {_registry_sql(root)})"


def honoured(root: Path, takedowns: Takedowns) -> list[list]:
    """[request id, date, kind, target, documents removed (near-duplicates included)] for the card."""
    con = duckdb.connect()
    try:
        counts = dict(con.sql(f"SELECT value, count(*) FROM {_registry_sql(root)} GROUP BY 1").fetchall())
    finally:
        con.close()
    return [[r.id, r.date.isoformat(), r.kind, _shown_target(r), int(counts.get(r.id, 0))] for r in takedowns.requests]


def _shown_target(r: Request) -> str:
    """What the card shows of a request's target: URLs and domains as they are; a text pattern
    only by its length (the card must not repeat what someone asked to remove)."""
    if r.kind in ("text", "regex"):
        return f"({r.kind} pattern, {len(r.target)} characters)"
    return r.target


# ------------------------------------------------------------------ applying to a layer


@dataclass(frozen=True)
class NearSettings:
    params: object
    threshold: float


def _near_settings(cfg) -> NearSettings | None:
    if cfg is None:
        return None
    from dataset_platform.stages.dedup.stage import _params

    d = cfg.pipeline.dedup
    return NearSettings(_params(d), float(d.threshold))


def _signatures(con, rel: str, params) -> tuple[list[str], object]:
    """(ids, signatures) of the texts of ``rel`` (dedup's MinHash over its normalised text)."""
    import numpy as np

    from dataset_platform.stages.dedup.minhash import batch_signatures

    rows = con.sql(f"SELECT id, text, lang FROM {rel} ORDER BY id").fetchall()
    if not rows:
        return [], np.zeros((0, params.permutations), dtype=np.uint64)
    ids = [r[0] for r in rows]
    return ids, batch_signatures([r[1] or "" for r in rows], [r[2] for r in rows], params, kernel=False)


def enforce(stage, ctx, out: BatchedLayer, label_sets=(), first: bool = False, inputs: dict | None = None
            ) -> tuple[dict, str]:
    """Remove the documents the takedown requests target from the parts of ``out`` (a per-batch
    layer about to be committed): the parts staged by this run, and every part when the request
    list changed since the layer was last swept. Matching rows move to the part's rejects (stage
    ``takedown``). ``first``: this is the first layer with texts (near-duplicates by signature and
    by the previous duplicate clusters are looked for here; the raw pages of removed documents,
    ``inputs``, lose their content). Returns counters and the fingerprint to record in the layer's
    manifest ("" without requests)."""
    root = ctx.workdir.root
    takedowns = load(ctx.config, root)
    fp = takedowns.fingerprint()
    registry = registry_file(root)
    if not takedowns and not registry.exists():
        return {}, ""
    con = ctx.con
    sweep = out.extra.get("takedowns", "") != fp
    candidates = {}
    for key in sorted(set(out.parts) | set(out._staged)):
        if key in out._dropped:
            continue
        staged = key in out._staged
        if staged or sweep:
            folder = out._staging(key) if staged else out.part_dir(key)
            if (folder / DATA).exists():
                candidates[key] = (folder, staged)
    if not candidates:
        return {"parts_scanned": 0, "removed": 0}, fp
    relabelled = _relabel_rejects(stage, con, out, root, candidates) if first else 0
    files = [c[0] / DATA for c in candidates.values()]
    keys = list(candidates)
    con.register("_td_files_arrow", _files_table(files, keys))
    con.sql("CREATE OR REPLACE TEMP TABLE _td_files AS SELECT * FROM _td_files_arrow")
    con.unregister("_td_files_arrow")
    con.sql("CREATE OR REPLACE TEMP VIEW _td_in AS SELECT f.key, i.* EXCLUDE (filename) FROM read_parquet(["
            + ", ".join(sql_str(f) for f in files) + "], filename = true, union_by_name = true) i "
            "JOIN _td_files f ON f.filename = i.filename")
    columns = set(con.sql("SELECT * FROM _td_in LIMIT 0").columns)
    direct = match_sql(takedowns, "_td_in", columns)
    arms = [f"SELECT id, rule, value, 0 AS pri FROM ({direct})"] if direct else []
    arms.append(f"SELECT r.id, r.rule, r.value, 1 AS pri FROM {_registry_sql(root)} r SEMI JOIN _td_in i ON i.id = r.id")
    con.sql("CREATE OR REPLACE TEMP TABLE _td_hits AS SELECT id, arg_min(rule, pri) AS rule, arg_min(value, pri) AS value "
            f"FROM ({' UNION ALL '.join(arms)}) GROUP BY id")
    near = _near_settings(ctx.config) if first and "text" in columns else None
    if near is not None:
        _near_duplicates(con, root, near, {k for k, (_f, s) in candidates.items() if s})
    # documents of other parts in a removed document's duplicate cluster: every part is looked at
    n_hits = int(con.sql("SELECT count(*) FROM _td_hits").fetchall()[0][0])
    new_sigs = None
    if n_hits and first:
        new_sigs = _new_registry_rows(con, root, near)
    hits_by_key = dict(con.sql("SELECT i.key, count(*) FROM _td_in i JOIN _td_hits h ON h.id = i.id GROUP BY 1").fetchall())
    if first and n_hits:
        _cluster_mates(con, root, out, candidates, hits_by_key)
        n_hits = int(con.sql("SELECT count(*) FROM _td_hits").fetchall()[0][0])
    removed = 0
    for key in sorted(hits_by_key):
        folder, staged = candidates[key]
        removed += _rewrite(stage, con, out, key, folder, staged, label_sets)
    if new_sigs is not None or (first and n_hits):
        _write_registry(con, root)
    blanked = 0
    if first and inputs and stage.input == "raw_pages":
        # raw pages: every part when the registry grew, else the input parts of the parts written now
        keys = set(inputs) if n_hits else {k for k, (_f, s) in candidates.items() if s}
        blanked = blank_raw(con, root, [inputs[k].file for k in sorted(keys) if k in inputs])
    c = {"parts_scanned": len(candidates), "parts_rewritten": len(hits_by_key), "removed": removed}
    if relabelled or blanked:
        c.update(rejects_relabelled=relabelled, raw_pages_blanked=blanked)
    return c, fp


#: the raw layer's content columns, emptied for a removed document (the row stays: the crawl log
#: still accounts for the URL, and the crawler's conditional requests still know the page)
RAW_CONTENT = ("title", "text", "html", "headers")


def blank_raw(con, root: Path, files: list[Path]) -> int:
    """Empty the content of the removed documents' rows in raw part ``files`` (rewritten in place,
    same rows, ids and order: nothing below is recomputed). The caller holds the raw layer's lock."""
    reg = f"(SELECT id FROM {_registry_sql(root)})"
    n = 0
    for f in files:
        src = f"read_parquet({sql_str(f)}, file_row_number = true)"
        cols = list(con.sql(f"SELECT * FROM read_parquet({sql_str(f)}) LIMIT 0").columns)
        content = [c for c in RAW_CONTENT if c in cols]
        filled = " OR ".join(f'"{c}" IS NOT NULL' for c in content if c != "headers")
        if not filled:
            continue
        k = int(con.sql(f"SELECT count(*) FROM {src} WHERE id IN {reg} AND ({filled})").fetchall()[0][0])
        if not k:
            continue
        empty = {c: ("'{}'" if c == "headers" else "NULL") for c in content}
        select = ", ".join(f'CASE WHEN id IN {reg} THEN {empty[c]} ELSE "{c}" END AS "{c}"' if c in empty else f'"{c}"'
                           for c in cols)
        write_parquet(con, f"SELECT {select} FROM {src} ORDER BY file_row_number", f, layer="raw_pages")
        n += k
    return n


def _relabel_rejects(stage, con, out: BatchedLayer, root: Path, candidates: dict) -> int:
    """A part recomputed by this run rejects a removed document for what is left of it (its raw page
    was emptied: ``empty_body``, ``no_main_text``): the reject says ``takedown`` again, with its request."""
    if not registry_file(root).exists():
        return 0
    n = 0
    for key, (folder, staged) in candidates.items():
        rej = folder / REJECTED
        if not staged or not rej.exists():
            continue
        r = f"read_parquet({sql_str(rej)})"
        k = int(con.sql(f"SELECT count(*) FROM {r} j SEMI JOIN {_registry_sql(root)} g USING (id) "
                        "WHERE j.stage <> 'takedown'").fetchall()[0][0])
        if not k:
            continue
        write_parquet(con, "SELECT j.id, j.source, j.url, CASE WHEN g.id IS NULL THEN j.stage ELSE 'takedown' END "
                           "AS stage, coalesce(g.rule, j.rule) AS rule, coalesce(g.value, j.value) AS value "
                           f"FROM {r} j LEFT JOIN {_registry_sql(root)} g USING (id) ORDER BY id, rule",
                      rej, layer="rejected_documents")
        info = out._staged[key]
        reasons = dict(con.sql(f"SELECT rule, count(*) FROM {r} GROUP BY 1 ORDER BY 1").fetchall())
        out.staged(replace(info, counters={**info.counters, "reasons": {a: int(b) for a, b in reasons.items()}}))
        n += k
    return n


def _files_table(files, keys):
    import pyarrow as pa

    return pa.table({"filename": [str(f) for f in files], "key": keys})


def _near_duplicates(con, root: Path, near: NearSettings, staged_keys: set[str]) -> None:
    """Add to ``_td_hits`` the documents of the parts written by this run whose signature is within
    dedup's threshold of a removed text (the registry's signatures and this run's direct hits)."""
    import numpy as np

    from dataset_platform.stages.dedup.minhash import sig_matrix

    if not staged_keys:
        return
    params = near.params
    reg = con.sql(f"SELECT value, sig FROM {_registry_sql(root)} WHERE sig IS NOT NULL ORDER BY id").to_arrow_table()
    hit_ids, hit_sigs = _signatures(con, "(SELECT i.id, i.text, i.lang FROM _td_in i SEMI JOIN _td_hits h ON h.id = i.id)",
                                     params)
    hit_vals = dict(con.sql("SELECT id, value FROM _td_hits").fetchall())
    sigs = [hit_sigs] if len(hit_ids) else []
    values = [hit_vals[i] for i in hit_ids]
    if reg.num_rows:
        sigs.append(sig_matrix(reg.column("sig").combine_chunks(), params.permutations))
        values += reg.column("value").to_pylist()
    if not sigs:
        return
    removed = np.concatenate(sigs)
    keys_sql = ", ".join(sql_str(k) for k in sorted(staged_keys))
    ids, docs = _signatures(con, f"(SELECT i.id, i.text, i.lang FROM _td_in i ANTI JOIN _td_hits h ON h.id = i.id "
                                 f"WHERE i.key IN ({keys_sql}))", params)
    found = []
    for start in range(0, len(ids), 2048):
        block = docs[start:start + 2048]
        sim = (block[:, None, :] == removed[None, :, :]).mean(axis=2)  # documents x removed texts
        best = sim.argmax(axis=1)
        for j in np.nonzero(sim.max(axis=1) >= near.threshold)[0]:
            found.append((ids[start + j], values[best[j]]))
    if found:
        import pyarrow as pa

        con.register("_td_near", pa.table({"id": [f[0] for f in found], "value": [f[1] for f in found]}))
        con.sql("INSERT INTO _td_hits SELECT id, 'takedown.near_duplicate', value FROM _td_near")
        con.unregister("_td_near")


def _new_registry_rows(con, root: Path, near: NearSettings | None):
    """``_td_new``: this run's hits not yet in the registry, with the signature of their text."""
    import pyarrow as pa

    con.sql(f"CREATE OR REPLACE TEMP TABLE _td_new AS SELECT h.* FROM _td_hits h "
            f"ANTI JOIN {_registry_sql(root)} r ON r.id = h.id")
    if near is None:
        con.sql("CREATE OR REPLACE TEMP TABLE _td_new_sig AS SELECT *, NULL::BLOB AS sig FROM _td_new")
        return True
    ids, sigs = _signatures(con, "(SELECT i.id, i.text, i.lang FROM _td_in i SEMI JOIN _td_new n ON n.id = i.id)",
                            near.params)
    con.register("_td_sigs", pa.table({"id": ids, "sig": [s.tobytes() for s in sigs]}))
    con.sql("CREATE OR REPLACE TEMP TABLE _td_new_sig AS SELECT n.*, s.sig FROM _td_new n LEFT JOIN _td_sigs s USING (id)")
    con.unregister("_td_sigs")
    return True


def _cluster_mates(con, root: Path, out: BatchedLayer, candidates: dict, hits_by_key: dict) -> None:
    """Documents in the duplicate cluster (previous dedup run) of a removed document are removed
    too (``takedown.near_duplicate``), in whatever part of the layer they are."""
    clusters = root / "layers" / "duplicate_clusters" / "data.parquet"
    if not clusters.exists():
        return
    c = f"read_parquet({sql_str(clusters)})"
    con.sql(f"""
        CREATE OR REPLACE TEMP TABLE _td_mates AS
        WITH hit_clusters AS (
            SELECT c.cluster_id, min(h.value) AS value FROM {c} c JOIN _td_hits h ON h.id IN (c.doc_id, c.keeper_id)
            GROUP BY 1),
        members AS (
            SELECT c.doc_id AS id, hc.value FROM {c} c JOIN hit_clusters hc USING (cluster_id)
            UNION ALL SELECT c.keeper_id, hc.value FROM {c} c JOIN hit_clusters hc USING (cluster_id))
        SELECT id, min(value) AS value FROM members WHERE id NOT IN (SELECT id FROM _td_hits) GROUP BY 1
    """)
    if not int(con.sql("SELECT count(*) FROM _td_mates").fetchall()[0][0]):
        return
    con.sql("INSERT INTO _td_hits SELECT id, 'takedown.near_duplicate', value FROM _td_mates")
    con.sql("INSERT INTO _td_new_sig SELECT id, 'takedown.near_duplicate', value, NULL::BLOB FROM _td_mates")
    # the parts holding a mate, among every part of the layer
    for key in sorted(set(out.parts) | set(out._staged)):
        if key in out._dropped:
            continue
        staged = key in out._staged
        folder = out._staging(key) if staged else out.part_dir(key)
        if not (folder / DATA).exists():
            continue
        n = int(con.sql(f"SELECT count(*) FROM read_parquet({sql_str(folder / DATA)}) d "
                        "SEMI JOIN _td_mates m ON m.id = d.id").fetchall()[0][0])
        if n:
            candidates.setdefault(key, (folder, staged))
            hits_by_key[key] = hits_by_key.get(key, 0) + n


def _write_registry(con, root: Path) -> None:
    f = registry_file(root)
    f.parent.mkdir(parents=True, exist_ok=True)
    con.sql("CREATE OR REPLACE TEMP TABLE _td_reg AS SELECT id, rule, value, sig FROM "
            f"{_registry_sql(root)} UNION ALL BY NAME SELECT id, rule, value, sig FROM _td_new_sig")
    write_parquet(con, "SELECT id, arg_min(rule, value) AS rule, min(value) AS value, any_value(sig) AS sig "
                       "FROM _td_reg GROUP BY id ORDER BY id", f, unless_same=True)


def _rewrite(stage, con, out: BatchedLayer, key: str, folder: Path, staged: bool, label_sets) -> int:
    """Part ``key`` without the documents of ``_td_hits``, which move to its rejects."""
    data, rej = folder / DATA, folder / REJECTED
    d = f"read_parquet({sql_str(data)})"
    con.sql(f"CREATE OR REPLACE TEMP TABLE _td_part AS SELECT d.id, d.source, d.url, h.rule, h.value FROM {d} d "
            "JOIN _td_hits h ON h.id = d.id")
    n = int(con.sql("SELECT count(*) FROM _td_part").fetchall()[0][0])
    if not n:
        return 0
    dest = folder if staged else out.stage(key)
    old_rej = f"read_parquet({sql_str(rej)})" if rej.exists() else None
    # the new files are written beside and renamed over (a staged part is rewritten in place)
    write_parquet(con, f"SELECT * FROM {d} ANTI JOIN _td_part t USING (id) ORDER BY id", dest / DATA,
                  layer=stage.output, label_sets=label_sets)
    rej_sql = ("SELECT id, source, url, 'takedown' AS stage, rule, value FROM _td_part"
               + (f" UNION ALL BY NAME SELECT * FROM {old_rej}" if old_rej else ""))
    write_parquet(con, f"SELECT * FROM ({rej_sql}) ORDER BY id, rule", dest / REJECTED, layer="rejected_documents")
    for extra in getattr(stage, "extra_outputs", ()):
        src = folder / f"{extra}.parquet"
        if src.exists():
            write_parquet(con, f"SELECT * FROM read_parquet({sql_str(src)}) x ANTI JOIN _td_part t USING (id) "
                               "ORDER BY ALL", dest / f"{extra}.parquet")
    info = out._staged.get(key) if staged else out.parts[key]
    c = dict(info.counters)
    reasons = dict(c.get("reasons", {}))
    for rule, k in con.sql("SELECT rule, count(*) FROM _td_part GROUP BY 1").fetchall():
        reasons[rule] = reasons.get(rule, 0) + int(k)
    c.update(kept=int(c.get("kept", info.rows)) - n, rejected=int(c.get("rejected", 0)) + n,
             reasons=dict(sorted(reasons.items())))
    new = replace(info, rows=info.rows - n, counters=c,
                  ids=ids_fingerprint(con, f"SELECT id FROM read_parquet({sql_str(dest / DATA)})"))
    out.staged(new)
    return n
