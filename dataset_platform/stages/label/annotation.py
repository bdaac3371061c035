"""The human-annotation round trip with Label Studio, and how far the annotators agree.

Out. :func:`select_for_review` picks the documents worth a person's time (set-based SQL over one
row per document and label set): a label whose confidence is below ``review.min_confidence``
(reason ``low_confidence``), then rule and model voting for different values
(``sources_disagree``), then a stable random audit sample of the rest (``audit``: ``md5(seed:id)``
below ``audit_fraction``, so the sample neither moves between runs nor depends on the DuckDB
version), capped at ``review.max_tasks`` in that order. :func:`export_tasks` turns the queue into
Label Studio tasks in its JSON import format, our automatic labels attached as *predictions*
(pre-filled choices a person confirms or corrects), and :func:`write_export` writes them with the
labelling config (:func:`labeling_config`) and a README for the person doing the import.

In. :func:`read_exports` parses Label Studio's "JSON" export (a list of tasks with their
``annotations``) into the ``human_annotations`` layer: one row per document, label set and
annotator, every annotator's label kept (disagreements are data). :func:`resolve` turns those
into one label per document and set by majority; a tie resolves nothing (the automatic label
stays). :func:`agreement` measures inter-annotator agreement per label set: Cohen's kappa for two
annotators, Fleiss' kappa (with per-item rater counts) for more.

We read and write Label Studio's documented JSON ourselves rather than through
``label-studio-sdk``: the SDK pins numpy below the version the project needs. Nothing here talks
to a Label Studio server; the files are the interface.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import duckdb
import numpy as np
import pyarrow as pa

from dataset_platform import atomic
from dataset_platform.config import LabelSet, ReviewSettings
from dataset_platform.contracts.schema import LAYERS
from dataset_platform.storage import sql_str

QUEUE_TABLE = "review_queue"
#: review reasons, in priority order
REASONS = ("low_confidence", "sources_disagree", "audit")
MODEL_VERSION = "dataset_platform"
#: where a person drops Label Studio's export, relative to the workdir
INBOX = "inbox/annotations"
#: key of the read counters in the schema metadata of :func:`read_exports`' table
COUNTS_KEY = b"dataset_platform.read_counts"

_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
ANNOTATIONS_SCHEMA = pa.schema([(name, _TYPES[typ]) for name, typ in LAYERS["human_annotations"]])
RESOLVED_SCHEMA = pa.schema([
    ("id", pa.string()), ("label_set", pa.string()), ("value", pa.string()),
    ("confidence", pa.float64()), ("annotators", pa.int64()), ("resolved", pa.bool_()),
])


# ---------------------------------------------------------------------------------------------
# Out: config, selection, tasks
# ---------------------------------------------------------------------------------------------

def labeling_config(sets: list[LabelSet]) -> str:
    """Label Studio's labelling config for our label sets: the title and text of the document,
    and one single-choice question per label set (the Choices ``name`` is the set's name, which
    is how an exported answer is matched back to its set)."""
    lines = ["<View>", '  <Header value="$title"/>', '  <Text name="text" value="$text"/>']
    for s in sets:
        lines.append(f'  <Header value={quoteattr(s.name)} size="5"/>')
        lines.append(f'  <Choices name={quoteattr(s.name)} toName="text" choice="single" showInline="true">')
        lines += [f"    <Choice value={quoteattr(v)}/>" for v in s.values]
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def select_for_review(con: duckdb.DuckDBPyConnection, details_sql: str, review: ReviewSettings, *, seed: int) -> str:
    """Create table ``review_queue`` (id, reason, priority) on ``con`` and return its name.

    ``details_sql`` is FROM-able with one row per document and label set: id, label_set, value,
    source, confidence, rule_value, model_value (NULL when that source abstained).

    A label a person gave (source ``human``) is never reviewed again: such rows raise no reason,
    and a document whose every set is human is not queued. The remaining rows of a document give
    its reason, the first that applies: ``low_confidence`` (a set below ``min_confidence``; a
    NULL confidence counts as 0), ``sources_disagree`` (rule and model both voted, differently),
    else ``audit`` when ``md5(seed:id)`` as a fraction of 2^60 is below ``audit_fraction`` (only
    documents with no human label at all are audited). ``priority`` is 1.. in reason order, then
    lowest confidence (the document's minimum over its automatic sets), then id; at most
    ``max_tasks`` rows. Set-based throughout: one GROUP BY over the details, one window.
    """
    min_conf = float(review.min_confidence)
    audit = float(review.audit_fraction)
    bucket = f"CAST(('0x' || left(md5({sql_str(str(int(seed)))} || ':' || id), 15)) AS UBIGINT) / 1152921504606846976.0"
    con.sql(
        f"""
        CREATE OR REPLACE TABLE {QUEUE_TABLE} AS
        WITH d AS (
          SELECT CAST(id AS VARCHAR) AS id, source = 'human' AS human,
                 coalesce(CAST(confidence AS DOUBLE), 0.0) AS conf,
                 rule_value IS NOT NULL AND model_value IS NOT NULL
                   AND CAST(rule_value AS VARCHAR) <> CAST(model_value AS VARCHAR) AS disagree
          FROM {details_sql}
        ), per_doc AS (
          SELECT id,
                 bool_or(human) AS any_human,
                 bool_and(human) AS all_human,
                 min(conf) FILTER (WHERE NOT human) AS min_conf,
                 coalesce(bool_or(conf < {min_conf}) FILTER (WHERE NOT human), false) AS low,
                 coalesce(bool_or(disagree) FILTER (WHERE NOT human), false) AS disagree
          FROM d GROUP BY id
        ), reasons AS (
          SELECT id, min_conf,
                 CASE WHEN low THEN 1 WHEN disagree THEN 2
                      WHEN NOT any_human AND {bucket} < {audit} THEN 3 END AS rank
          FROM per_doc WHERE NOT all_human
        ), ranked AS (
          SELECT id, rank,
                 row_number() OVER (ORDER BY rank, min_conf, id) AS priority
          FROM reasons WHERE rank IS NOT NULL
        )
        SELECT id,
               CAST(['{REASONS[0]}', '{REASONS[1]}', '{REASONS[2]}'][rank] AS VARCHAR) AS reason,
               CAST(priority AS BIGINT) AS priority
        FROM ranked WHERE priority <= {int(review.max_tasks)}
        ORDER BY priority
        """
    )
    return QUEUE_TABLE


def export_tasks(
    con: duckdb.DuckDBPyConnection, queue_table: str, docs_sql: str, details_sql: str, sets: list[LabelSet]
) -> list[dict]:
    """The queued documents as Label Studio tasks (its JSON import format), by priority.

    ``docs_sql``: FROM-able with id, title, text, url. Each task's ``data`` has doc_id, title,
    text, url and the review reason; its one prediction (``model_version`` "dataset_platform",
    ``score`` the lowest confidence of the document's labels) pre-fills every configured set with
    the current automatic label, so a person corrects rather than starts from nothing. A value
    that is not among the set's values (a stale label after a config change) is left out.
    """
    allowed = {s.name: set(s.values) for s in sets}
    order = {s.name: i for i, s in enumerate(sets)}
    docs = con.sql(
        f"""
        SELECT q.id, q.reason, q.priority, coalesce(CAST(d.title AS VARCHAR), '') AS title,
               coalesce(CAST(d.text AS VARCHAR), '') AS text, coalesce(CAST(d.url AS VARCHAR), '') AS url
        FROM {queue_table} q JOIN {docs_sql} d ON CAST(d.id AS VARCHAR) = q.id
        ORDER BY q.priority, q.id
        """
    ).fetchall()
    labels: dict[str, list[tuple[str, str | None, float]]] = {}
    rows = con.sql(
        f"""
        SELECT CAST(x.id AS VARCHAR), CAST(x.label_set AS VARCHAR), CAST(x.value AS VARCHAR),
               coalesce(CAST(x.confidence AS DOUBLE), 0.0)
        FROM {details_sql} x SEMI JOIN {queue_table} q ON CAST(x.id AS VARCHAR) = q.id
        ORDER BY 1, 2
        """
    ).fetchall()
    for doc_id, label_set, value, conf in rows:
        if label_set in allowed:
            labels.setdefault(doc_id, []).append((label_set, value, conf))
    tasks = []
    for doc_id, reason, _priority, title, text, url in docs:
        mine = sorted(labels.get(doc_id, []), key=lambda r: order[r[0]])
        result = [
            {"from_name": name, "to_name": "text", "type": "choices", "value": {"choices": [value]}}
            for name, value, _c in mine if value is not None and value in allowed[name]
        ]
        task = {"data": {"doc_id": doc_id, "title": title, "text": text, "url": url, "reason": reason}}
        if result:
            score = min(c for _n, _v, c in mine)
            task["predictions"] = [{"model_version": MODEL_VERSION, "score": float(score), "result": result}]
        tasks.append(task)
    return tasks


_README = """\
Documents for review in Label Studio ({n} tasks)
================================================

Files
  tasks.json            the tasks, our current labels attached as predictions (pre-filled)
  labeling_config.xml   the labelling interface: one single-choice question per label set

Import (once per batch)
  1. In Label Studio, create a project (or open the one you use for this dataset).
  2. Settings -> Labeling Interface -> Code: paste labeling_config.xml, Save.
     Keep the names of the <Choices> elements: they are the label sets.
  3. Import -> upload tasks.json. The pre-filled answers are our automatic labels;
     correct them where they are wrong and submit.
     (Via the API: POST /api/projects/<id>/import with the content of tasks.json.)

Bring the labels back
  4. Export -> format "JSON" (not "JSON-MIN" or CSV) -> download.
  5. Put the downloaded file into  <workdir>/{inbox}/
     (any name ending in .json). The next pipeline run reads every file there;
     a later export of the same project may replace or sit beside an earlier one:
     for each document, label set and annotator the newest answer counts.

Notes
  - Skipped (cancelled) annotations are ignored.
  - Documents labelled by several people are resolved by majority; a tie keeps the
    automatic label. Agreement between annotators is reported per label set (kappa).
  - Annotators are identified by Label Studio's user id, or by e-mail when the export
    includes user details; export the same way each time so a person keeps one identity.
"""


def write_export(out_dir: Path, tasks: list[dict], config_xml: str) -> dict[str, Path]:
    """Write ``tasks.json``, ``labeling_config.xml`` and ``README.txt`` into ``out_dir``, each
    atomically (a reader never sees half a file). Returns {"tasks", "config", "readme"} -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"tasks": out_dir / "tasks.json", "config": out_dir / "labeling_config.xml", "readme": out_dir / "README.txt"}
    atomic.write_text(paths["tasks"], json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    atomic.write_text(paths["config"], config_xml)
    atomic.write_text(paths["readme"], _README.format(n=len(tasks), inbox=INBOX))
    return paths


# ---------------------------------------------------------------------------------------------
# In: exports, resolution
# ---------------------------------------------------------------------------------------------

#: counters of :func:`read_exports`, always all present
READ_COUNTS = (
    "files", "tasks", "annotations", "rows",
    "tasks_without_doc_id",  # tasks whose data has no doc_id (not ours): skipped with their annotations
    "cancelled",  # skipped annotations (was_cancelled)
    "no_annotator",  # annotations without completed_by: skipped
    "non_choice_results",  # result items that are not type "choices" (e.g. a text area): skipped
    "empty_choices",  # choices results with no value: skipped
    "multi_choice",  # choices results with several values (a config changed to multiple): skipped
    "superseded",  # rows replaced by a newer answer of the same annotator (re-exports, re-annotation)
    "unknown_label_set",  # with ``sets``: rows for a set not configured, dropped
    "unknown_value",  # with ``sets``: rows whose value is not among the set's values, dropped
)


def read_exports(paths: list[Path], sets: list[LabelSet] | None = None) -> pa.Table:
    """Label Studio "JSON" exports -> the ``human_annotations`` layer (columns and types of
    ``schema.LAYERS["human_annotations"]``), sorted by doc_id, label_set, annotator.

    Each file is a list of tasks with ``data.doc_id`` and ``annotations`` (each with id,
    completed_by, result, was_cancelled, updated_at). ``completed_by`` is the user's id, or an
    object when the export expands users: its ``email`` is taken when present, else its ``id``.
    One row per choices result; for the same (doc_id, label_set, annotator) across annotations
    and files the newest ``updated_at`` wins (then the highest annotation id, then the later
    file name). ``file`` is the file's name.

    Skipped items are counted, not raised: the counters (:data:`READ_COUNTS`) are in the table's
    schema metadata, read them with :func:`read_counts`. With ``sets`` rows for an unknown set or
    value are dropped (counted); without, every row is kept and the caller checks. A file that is
    not JSON, not a list, or is a different export format raises ValueError naming the file.
    """
    counts = dict.fromkeys(READ_COUNTS, 0)
    allowed = None if sets is None else {s.name: set(s.values) for s in sets}
    best: dict[tuple[str, str, str], tuple[tuple, dict]] = {}
    for path in sorted(Path(p) for p in paths):
        counts["files"] += 1
        for row in _rows_of_file(path, counts):
            if allowed is not None:
                if row["label_set"] not in allowed:
                    counts["unknown_label_set"] += 1
                    continue
                if row["value"] not in allowed[row["label_set"]]:
                    counts["unknown_value"] += 1
                    continue
            key = (row["doc_id"], row["label_set"], row["annotator"])
            rank = (_instant(row["updated_at"]), row["annotation_id"] if row["annotation_id"] is not None else -1, row["file"])
            if key in best:
                counts["superseded"] += 1
                if rank <= best[key][0]:
                    continue
            best[key] = (rank, row)
    rows = [best[k][1] for k in sorted(best)]
    counts["rows"] = len(rows)
    table = pa.Table.from_pylist(rows, schema=ANNOTATIONS_SCHEMA)
    return table.replace_schema_metadata({COUNTS_KEY: json.dumps(counts, sort_keys=True).encode()})


def read_counts(table: pa.Table) -> dict[str, int]:
    """The counters :func:`read_exports` left in its table's metadata (all zero when absent)."""
    meta = table.schema.metadata or {}
    return {**dict.fromkeys(READ_COUNTS, 0), **json.loads(meta.get(COUNTS_KEY, b"{}"))}


def _rows_of_file(path: Path, counts: dict[str, int]):
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: expected a JSON list of tasks (Label Studio's \"JSON\" export), got a {type(tasks).__name__}")
    if tasks and not any(isinstance(t, dict) and "annotations" in t and "data" in t for t in tasks):
        raise ValueError(f"{path}: no task has \"data\" and \"annotations\": export with the \"JSON\" format "
                         "(not JSON-MIN, CSV or an import file)")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise ValueError(f"{path}: item {i} is not a task object")
        counts["tasks"] += 1
        data = task.get("data") or {}
        doc_id = data.get("doc_id") if isinstance(data, dict) else None
        if doc_id is None or doc_id == "":
            counts["tasks_without_doc_id"] += 1
            continue
        for ann in task.get("annotations") or []:
            counts["annotations"] += 1
            if ann.get("was_cancelled"):
                counts["cancelled"] += 1
                continue
            annotator = _annotator(ann.get("completed_by"))
            if annotator is None:
                counts["no_annotator"] += 1
                continue
            for res in ann.get("result") or []:
                if res.get("type") != "choices":
                    counts["non_choice_results"] += 1
                    continue
                choices = (res.get("value") or {}).get("choices") or []
                if not choices:
                    counts["empty_choices"] += 1
                    continue
                if len(choices) > 1:
                    counts["multi_choice"] += 1
                    continue
                yield {
                    "doc_id": str(doc_id), "label_set": str(res.get("from_name")), "annotator": annotator,
                    "value": str(choices[0]), "annotation_id": _int(ann.get("id")), "task_id": _int(task.get("id")),
                    "updated_at": ann.get("updated_at") or ann.get("created_at"), "file": path.name,
                }


def _annotator(completed_by) -> str | None:
    if isinstance(completed_by, dict):
        if completed_by.get("email"):
            return str(completed_by["email"])
        completed_by = completed_by.get("id")
    if completed_by is None or completed_by == "":
        return None
    return str(completed_by)


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _instant(ts: str | None) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (the oldest possible when missing or unparseable),
    so that exports with different offsets compare correctly."""
    if ts:
        try:
            t = datetime.fromisoformat(str(ts))  # Python 3.11 reads a trailing Z
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


def resolve(annotations: pa.Table) -> pa.Table:
    """One label per (document, label set) from the annotators' labels: the majority value.

    Columns id, label_set, value, confidence (the share of the document's annotators who chose
    the winning value), annotators (distinct annotators of that document and set), resolved.
    On a tie for the most votes ``resolved`` is false and value NULL: the automatic label stays,
    the disagreement stays visible in ``human_annotations``. Sorted by id, label_set.
    """
    con = duckdb.connect(":memory:")
    try:
        con.register("_ann", annotations)
        out = con.sql(
            """
            WITH votes AS (
              SELECT doc_id, label_set, value, count(DISTINCT annotator) AS n
              FROM _ann GROUP BY doc_id, label_set, value
            ), per AS (
              SELECT doc_id, label_set, max(n) AS top, sum(n) AS total
              FROM votes GROUP BY doc_id, label_set
            ), who AS (
              SELECT doc_id, label_set, count(DISTINCT annotator) AS annotators
              FROM _ann GROUP BY doc_id, label_set
            ), winners AS (
              SELECT v.doc_id, v.label_set, count(*) AS n_top, min(v.value) AS value
              FROM votes v JOIN per p USING (doc_id, label_set)
              WHERE v.n = p.top GROUP BY v.doc_id, v.label_set
            )
            SELECT CAST(p.doc_id AS VARCHAR) AS id, CAST(p.label_set AS VARCHAR) AS label_set,
                   CASE WHEN w.n_top = 1 THEN w.value END AS value,
                   CAST(p.top / p.total AS DOUBLE) AS confidence,
                   CAST(h.annotators AS BIGINT) AS annotators,
                   w.n_top = 1 AS resolved
            FROM per p JOIN winners w USING (doc_id, label_set) JOIN who h USING (doc_id, label_set)
            ORDER BY id, label_set
            """
        ).to_arrow_table()
        return out.cast(RESOLVED_SCHEMA)
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Agreement
# ---------------------------------------------------------------------------------------------

def cohen_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two raters' labels of the same items: (p_o - p_e) / (1 - p_e), p_o the
    share of items they agree on, p_e the agreement expected from each rater's own label shares.
    When p_e is 1 (both gave one and the same label to everything) agreement is perfect: 1.0."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: the raters labelled different numbers of items ({len(a)} and {len(b)})")
    if not a:
        raise ValueError("cohen_kappa: no items")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if p_e >= 1.0:
        return 1.0
    return float((p_o - p_e) / (1.0 - p_e))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an items x categories matrix of rater counts (row i: how many of the
    item's n_i raters chose each category).

    Rows may have different totals (n_i >= 2), the usual generalisation: each item's agreement is
    P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)), the share of agreeing ordered rater pairs among
    its own raters; P = mean P_i; category shares p_j = sum_i n_ij / sum_i n_i; P_e = sum_j p_j^2;
    kappa = (P - P_e) / (1 - P_e) (1.0 when P_e is 1: one category used by everyone). With equal
    n_i this is Fleiss (1971) exactly.
    """
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"fleiss_kappa: expected a non-empty items x categories matrix, got shape {m.shape}")
    if (m < 0).any():
        raise ValueError("fleiss_kappa: counts must be >= 0")
    n_i = m.sum(axis=1)
    if (n_i < 2).any():
        raise ValueError("fleiss_kappa: every item needs at least 2 ratings")
    p_i = ((m * m).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_bar = float(p_i.mean())
    p_j = m.sum(axis=0) / n_i.sum()
    p_e = float((p_j * p_j).sum())
    if p_e >= 1.0:
        return 1.0
    return float((p_bar - p_e) / (1.0 - p_e))


def agreement(annotations: pa.Table) -> dict[str, dict]:
    """Inter-annotator agreement per label set, over the documents labelled by >= 2 annotators.

    When exactly two distinct annotators labelled those documents: ``{"method": "cohen",
    "kappa", "items", "annotators": 2}``; more: Fleiss' kappa over the items' per-value counts
    (``"method": "fleiss"``). Fewer than 2 such items: kappa None (too little to measure; method
    None when no item has two annotators). Label sets in name order.
    """
    by_set: dict[str, dict[str, dict[str, str]]] = {}
    cols = annotations.select(["label_set", "doc_id", "annotator", "value"]).to_pydict()
    for s, d, who, v in zip(cols["label_set"], cols["doc_id"], cols["annotator"], cols["value"]):
        by_set.setdefault(s, {}).setdefault(d, {})[who] = v
    out: dict[str, dict] = {}
    for name in sorted(by_set):
        items = {d: r for d, r in by_set[name].items() if len(r) >= 2}
        raters = sorted({w for r in items.values() for w in r})
        method = None if not items else ("cohen" if len(raters) == 2 else "fleiss")
        kappa = None
        if len(items) >= 2:
            docs = sorted(items)
            if method == "cohen":
                kappa = cohen_kappa([items[d][raters[0]] for d in docs], [items[d][raters[1]] for d in docs])
            else:
                values = sorted({v for r in items.values() for v in r.values()})
                col = {v: j for j, v in enumerate(values)}
                m = np.zeros((len(docs), len(values)), dtype=np.int64)
                for i, d in enumerate(docs):
                    for v in items[d].values():
                        m[i, col[v]] += 1
                kappa = fleiss_kappa(m)
        out[name] = {"method": method, "kappa": kappa, "items": len(items), "annotators": len(raters)}
    return out
