"""Automatic labelling: one value per document and configured label set, with its source and
confidence, from labelling functions (rules), a classifier trained on gold labels, and people.

Three kinds of evidence are combined per document and label set (``config.LabelSet``):

* **Rules** (labelling functions) vote, set-based in DuckDB in one scan of the input. A
  ``keywords`` rule adds the number of occurrences of each keyword (case-insensitive substring of
  ``lower(title || '\\n' || text)``: no segmentation needed, so it works for Chinese); a ``regex``
  rule adds its number of non-empty matches (RE2, case-insensitive, over title and text); a
  ``url`` rule (regex searched in the URL) and a ``domains`` rule (the URL's host is one of them or
  a subdomain) add 1. Weighted majority vote: the value with the most votes wins (ties: the order
  of the set's ``values``), its confidence is its share of all the set's votes. No vote: no rule
  value.
* **A classifier** per set with ``model: true``, trained on the gold labels that exist for it
  (the gold JSONL, see :func:`read_gold`, plus the resolved human labels): TF-IDF over our own
  tokens + a linear SVM with calibrated probabilities (:func:`train_classifier`; the choices
  are measured in ``bench/label_eval.py``: it beat logistic regression in macro-F1 and in log
  loss). One analyzer for mixed text: words of space-separated scripts lower-cased, and for
  Han/kana runs character unigrams + bigrams - on a Chinese topic set (CMMLU subjects) they beat
  jieba words and bigrams alone, are faster than jieba and need no dictionary. It needs at least
  two classes with two examples each; it then labels every document, streamed in bounded
  batches. A document without a single known token gets no model value (the class prior is
  not evidence).
* **People**: a resolved human label (``human`` table) always wins.

Combination: human (its confidence) > rule and model agreeing (``rule+model``, the larger
confidence) > the more confident of rule and model (a tie goes to the rule: it was written by a
person) > whichever exists > the set's default (source ``default``, confidence 0). A value outside
the set's ``values`` can never appear: rules are validated with the config, gold labels and human
labels are checked here, and the model only knows the values it was trained on.

Outputs on the connection: ``kept`` (the ``labelled_documents`` contract columns, id order),
an empty ``rejected`` (labelling drops nothing) and ``label_details`` (one row per document and
set: every piece of evidence next to the decision; the annotation export reads it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from dataset_platform.config import LabelRule, LabelSet, LabelSettings
from dataset_platform.contracts import schema
from dataset_platform.stages.base import (
    CliOption,
    Prepared,
    Stage,
    StageContext,
    StageOutput,
    StageResult,
    finish_stage,
    stored_model,
    streamable_view,
)
from dataset_platform.storage import sql_str
from dataset_platform.text.jsonl import json_objects

NAME = "label"
#: every value of ``<set>_source``
SOURCES = ("human", "rule+model", "rule", "model", "default")
INPUT_COLUMNS = [name for name, _ in schema.layer_columns("labelled_documents")]
#: the classifier reads at most this many characters of a document (title + text): the topic of
#: a long page is clear long before its end, and the cost stays bounded
MAX_MODEL_CHARS = 20_000
#: chosen in bench/label_eval.py (BBC news, CMMLU subjects): see tokens and train_classifier
DEFAULT_CJK = "unibigram"
DEFAULT_CLASSIFIER = "svc"
DEFAULT_C = 1.0
DETAIL_COLUMNS = ("id", "label_set", "value", "source", "confidence", "rule_value", "rule_confidence",
                  "model_value", "model_confidence", "human_value")
#: confidences are rounded so that floating-point noise (BLAS threads, platforms) cannot change output
DIGITS = 6


class GoldError(ValueError):
    """The gold-label file (or table) is malformed or uses values a label set does not allow."""


# ------------------------------------------------------------------ gold labels


def read_gold(path: Path, sets: Sequence[LabelSet]) -> pa.Table:
    """Read and validate a gold-label JSONL: one object per line with ``id``, ``text``, optional
    ``title`` and one field per label set (absent or null: not labelled for that set).

    Returns a table (id, title, text, one string column per set) sorted by id. Raises
    :class:`GoldError` naming the file and line: bad JSON, missing/empty id or text, a repeated
    id, a value that is not one of the set's values (the allowed ones are listed), or a file that
    labels none of the sets at all. Fields that are not label sets are ignored.
    """
    path = Path(path)
    rows: list[dict] = []
    seen: dict[str, int] = {}
    for no, where, obj in json_objects(path, GoldError, what="a gold line"):
        row = _gold_row(obj, sets, where)
        if row["id"] in seen:
            raise GoldError(f"{where}: id {row['id']!r} repeats line {seen[row['id']]}")
        seen[row["id"]] = no
        rows.append(row)
    if not any(r[s.name] is not None for r in rows for s in sets):
        raise GoldError(f"{path}: no line labels any of the label sets {[s.name for s in sets]} "
                        "(one field per set, named like the set)")
    rows.sort(key=lambda r: r["id"])
    return _gold_table(rows, sets)


def _gold_row(obj: dict, sets: Sequence[LabelSet], where: str) -> dict:
    ident = obj.get("id")
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or str(ident) == "":
        raise GoldError(f"{where}: 'id' must be a non-empty string (or an integer), got {ident!r}")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise GoldError(f"{where}: 'text' must be a non-empty string")
    title = obj.get("title")
    if title is not None and not isinstance(title, str):
        raise GoldError(f"{where}: 'title' must be a string, got {type(title).__name__}")
    row = {"id": str(ident), "title": title, "text": text}
    for s in sets:
        value = obj.get(s.name)
        if value is not None and value not in s.values:
            raise GoldError(f"{where}: {s.name} = {value!r} is not one of the allowed values {s.values}")
        row[s.name] = value
    return row


def _gold_table(rows: list[dict], sets: Sequence[LabelSet]) -> pa.Table:
    names = ["id", "title", "text"] + [s.name for s in sets]
    return pa.table({n: pa.array([r[n] for r in rows], pa.string()) for n in names})


def check_gold(gold: pa.Table, sets: Sequence[LabelSet], origin: str = "gold table") -> pa.Table:
    """Validate a gold table given directly (same rules as :func:`read_gold`; set columns may be
    absent) and return it with exactly the columns id, title, text and one per set."""
    missing = [c for c in ("id", "text") if c not in gold.column_names]
    if missing:
        raise GoldError(f"{origin}: missing column(s) {missing} (has {gold.column_names})")
    cols = gold.column_names
    rows = [
        {"id": r["id"], "title": r.get("title"), "text": r["text"], **{s.name: r.get(s.name) for s in sets}}
        for r in gold.select([c for c in cols if c in {"id", "title", "text"} | {s.name for s in sets}]).to_pylist()
    ]
    seen: set[str] = set()
    for i, r in enumerate(rows):
        row = _gold_row(r, sets, f"{origin} row {i}")
        if row["id"] in seen:
            raise GoldError(f"{origin} row {i}: id {row['id']!r} repeats")
        seen.add(row["id"])
        rows[i] = row
    rows.sort(key=lambda r: r["id"])
    return _gold_table(rows, sets)


# ------------------------------------------------------------------ tokens and the classifier

# Han (incl. extensions and compatibility), kana: scripts written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN_RE = re.compile(rf"([{_CJK}]+)|([^\W\d_{_CJK}]{{2,}})")


def tokens(text: str, cjk: str = DEFAULT_CJK) -> list[str]:
    """The classifier's tokens of a (mixed-language) text.

    Words of space-separated scripts: runs of letters (2+), lower-cased; digits and punctuation
    are dropped. Runs of Han/kana characters: ``cjk`` decides - ``bigram`` (overlapping character
    bigrams; a lone character is its own token), ``unibigram`` (characters and bigrams) or
    ``jieba`` (jieba's words, precise mode).
    """
    out: list[str] = []
    for run, word in _TOKEN_RE.findall(text.lower()):
        if word:
            out.append(word)
        elif cjk == "jieba":
            out.extend(_jieba().lcut(run))
        else:
            if cjk == "unibigram" or len(run) == 1:
                out.extend(run)
            out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return out


_JIEBA = None


def _jieba():
    global _JIEBA
    if _JIEBA is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _JIEBA = jieba
    return _JIEBA


def model_text(title: str | None, text: str | None) -> str:
    """What the classifier reads of a document (as the SQL of the prediction stream builds it)."""
    return ((title or "") + "\n" + (text or ""))[:MAX_MODEL_CHARS]


def _identity(x):  # the vectoriser gets token lists: tokenising once serves every label set
    return x


@dataclass
class Classifier:
    """A trained classifier of one label set: ``classes`` are the values it can predict."""

    classes: list[str]
    train_rows: int
    vectorizer: object
    model: object

    def predict(self, docs_tokens: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Per document: index into ``classes`` (-1: no known token, no prediction) and its probability."""
        x = self.vectorizer.transform(docs_tokens)
        proba = self.model.predict_proba(x)
        best = proba.argmax(axis=1)  # first of equal maxima: classes are sorted, deterministic
        conf = proba[np.arange(len(best)), best]
        empty = np.diff(x.indptr) == 0
        best[empty] = -1
        conf[empty] = 0.0
        return best, np.round(conf, DIGITS)


def train_classifier(
    texts: Sequence[str], labels: Sequence[str], *, seed: int = 0, cjk: str = DEFAULT_CJK,
    kind: str = DEFAULT_CLASSIFIER, c: float = DEFAULT_C, ensemble: bool = False,
) -> Classifier | str:
    """Train TF-IDF (sublinear tf, our :func:`tokens`) + a linear classifier; returns the
    :class:`Classifier`, or a string saying why no model can be trained (fewer than two classes
    with at least two examples). Classes with a single example are left out (a calibrated model
    cannot be fitted on them, and one example teaches little).

    ``kind``: ``svc`` (the default: a linear SVM, balanced class weights, ``C=c``, with sigmoid
    (Platt) probabilities fitted on 3-fold cross-validated decisions; ``ensemble=True`` averages
    the three fold models instead of refitting one on all rows) or ``logreg`` (logistic
    regression, L2, ``C=c``). Measured in ``bench/label_eval.py`` on BBC news (English) and CMMLU
    subjects (Chinese): the calibrated SVM had the best macro-F1 on both and the lowest log loss
    (the most honest confidences, which are compared with the rules' ones); logistic regression
    needed C >= 100 to come near and was slower. Deterministic: fixed ``random_state=seed``,
    unshuffled calibration folds, rows sorted by the caller.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    counts = Counter(labels)
    usable = {v for v, n in counts.items() if n >= 2}
    if len(usable) < 2:
        have = ", ".join(f"{v}={n}" for v, n in sorted(counts.items())) or "none"
        return f"needs >= 2 classes with >= 2 gold examples each (has {have})"
    rows = [i for i, v in enumerate(labels) if v in usable]
    docs = [tokens(texts[i], cjk) for i in rows]
    y = np.asarray([labels[i] for i in rows], dtype=object)
    vec = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, dtype=np.float64)
    x = vec.fit_transform(docs)
    if kind == "svc":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import LinearSVC

        folds = min(3, min(counts[v] for v in usable))  # every class in every calibration fold
        svm = LinearSVC(C=c, class_weight="balanced", random_state=seed)
        model = CalibratedClassifierCV(svm, cv=folds, method="sigmoid", ensemble=ensemble)
    elif kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    else:
        raise ValueError(f"unknown classifier kind {kind!r} (svc | logreg)")
    model.fit(x, y)
    return Classifier(classes=[str(v) for v in model.classes_], train_rows=len(y), vectorizer=vec, model=model)


# ------------------------------------------------------------------ the stage


@dataclass
class Models:
    """What labelling needs besides the documents: the trained classifiers per set, how many rows
    each was trained on, and the resolved human labels (see :func:`run_label`)."""

    classifiers: dict[str, Classifier]
    train_rows: dict[str, int]
    human: pa.Table | None = None


def train_models(
    con: duckdb.DuckDBPyConnection,
    docs_sql: str | None,
    settings: LabelSettings,
    *,
    gold: pa.Table | None = None,
    human: pa.Table | None = None,
    log: Callable[[str], None] | None = print,
) -> Models:
    """Train a classifier per set with ``model: true`` on the gold rows and the resolved human
    labels (whose texts are read from ``docs_sql``, by id; None: gold only)."""
    log = log or (lambda _m: None)
    sets = list(settings.sets)
    if gold is None and settings.gold:
        gold = read_gold(Path(settings.gold), sets)
    elif gold is not None:
        gold = check_gold(gold, sets)
    _human_table(con, human, sets, log)
    docs = "_label_train_docs"
    if docs_sql is not None:
        have = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {docs_sql}").fetchall()}
        title = "CAST(title AS VARCHAR)" if "title" in have else "NULL::VARCHAR"
        con.sql(f"CREATE OR REPLACE TEMP VIEW {docs} AS SELECT CAST(id AS VARCHAR) AS id, "
                f"{title} AS title, CAST(text AS VARCHAR) AS text FROM {docs_sql}")
    else:
        con.sql(f"CREATE OR REPLACE TEMP VIEW {docs} AS SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS title, "
                "NULL::VARCHAR AS text WHERE false")
    classifiers: dict[str, Classifier] = {}
    train_rows: dict[str, int] = {}
    for s in sets:
        if not s.model:
            train_rows[s.name] = 0
            continue
        texts, labels = _training_rows(con, gold, s, docs)
        trained = train_classifier(texts, labels, seed=settings.seed)
        if isinstance(trained, Classifier):
            classifiers[s.name] = trained
            train_rows[s.name] = trained.train_rows
            log(f"label: {s.name}: classifier trained on {trained.train_rows} gold rows, classes {trained.classes}")
        else:
            train_rows[s.name] = 0
            log(f"label: {s.name}: no classifier: {trained}")
    return Models(classifiers, train_rows, human)


def apply_labels(
    con: duckdb.DuckDBPyConnection,
    src_sql: str,
    settings: LabelSettings,
    models: Models,
    *,
    batch_size: int = 2000,
    log: Callable[[str], None] | None = print,
) -> StageResult:
    """Label every document of ``src_sql`` with the rules, ``models`` and the human labels; a
    pure function of each document. Leaves ``kept``, ``rejected`` (empty) and ``label_details``."""
    log = log or (lambda _m: None)
    sets = list(settings.sets)
    _input_view(con, src_sql)
    n = con.sql("SELECT count(*) FROM _label_in").fetchall()[0][0]
    _human_table(con, models.human, sets, lambda _m: None)
    _rule_votes(con, sets)
    _predict(con, models.classifiers, n, batch_size, log)
    _combine(con, sets)
    _kept(con, [s.name for s in sets])
    con.sql("CREATE OR REPLACE TABLE rejected (id VARCHAR, source VARCHAR, url VARCHAR, stage VARCHAR, "
            "rule VARCHAR, value VARCHAR)")
    result = finish_stage(con, NAME, input_rows=n)
    result.extra.update(_extra(con, sets, models.train_rows))
    return result


def run_label(
    con: duckdb.DuckDBPyConnection,
    src_sql: str,
    settings: LabelSettings,
    *,
    gold: pa.Table | None = None,
    human: pa.Table | None = None,
    batch_size: int = 2000,
    log: Callable[[str], None] | None = print,
) -> StageResult:
    """Label every document of ``src_sql`` for every label set of ``settings``: classifiers
    trained here (:func:`train_models`), then :func:`apply_labels`.

    ``src_sql``: FROM-able SQL with the deduplicated columns (id and text required; of the other
    contract columns, absent ones are NULL; further columns are ignored); ids must be unique.
    ``gold``: gold labels (see :func:`read_gold`; validated again here); None: read from
    ``settings.gold`` when that is set. ``human``: people's labels, columns id, label_set, value,
    confidence, resolved (only resolved rows count; one per document and set is expected, else
    the most confident). Leaves ``kept``, ``rejected`` (empty) and ``label_details``.
    """
    _input_view(con, src_sql)  # (checks the input: id and text, unique ids)
    con.sql("CREATE OR REPLACE TEMP VIEW _label_docs AS SELECT * FROM _label_in")
    models = train_models(con, "_label_docs", settings, gold=gold, human=human, log=log)
    return apply_labels(con, src_sql, settings, models, batch_size=batch_size, log=log)


def _input_view(con: duckdb.DuckDBPyConnection, src_sql: str) -> None:
    """``_label_in``: the contract's input columns (absent ones NULL), streamable on a cursor."""
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src_sql}").fetchall()}
    for need in ("id", "text"):
        if need not in cols:
            raise ValueError(f"label input needs a {need!r} column (has: {', '.join(sorted(cols))})")
    types = dict(schema.layer_columns("labelled_documents"))
    select = ", ".join(
        f'CAST("{c}" AS {types[c]}) AS "{c}"' if c in cols else f'NULL::{types[c]} AS "{c}"' for c in INPUT_COLUMNS
    )
    streamable_view(con, "_label_in", f"SELECT {select} FROM {src_sql}")
    n, distinct = con.sql("SELECT count(*), count(DISTINCT id) FROM _label_in").fetchall()[0]
    if n != distinct:
        dup = con.sql("SELECT id FROM _label_in GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 3").fetchall()
        raise ValueError(f"label input has {n - distinct} repeated ids (e.g. {', '.join(str(r[0]) for r in dup)})")


def _human_table(con: duckdb.DuckDBPyConnection, human: pa.Table | None, sets: list[LabelSet], log) -> None:
    """``_human``: one resolved human label per (id, label_set), values checked against the set."""
    con.sql("CREATE OR REPLACE TABLE _human (id VARCHAR, label_set VARCHAR, value VARCHAR, confidence DOUBLE)")
    if human is None or human.num_rows == 0:
        return
    need = ["id", "label_set", "value", "confidence", "resolved"]
    missing = [c for c in need if c not in human.column_names]
    if missing:
        raise ValueError(f"human labels need columns {need}; missing {missing}")
    allowed = pa.table({
        "label_set": pa.array([s.name for s in sets for _ in s.values], pa.string()),
        "value": pa.array([v for s in sets for v in s.values], pa.string()),
        "ord": pa.array([i for s in sets for i, _ in enumerate(s.values)], pa.int64()),
    })
    con.register("_human_arrow", human.select(need))
    con.register("_allowed_arrow", allowed)
    bad = con.sql(
        "SELECT count(*) FROM _human_arrow h ANTI JOIN _allowed_arrow a "
        "ON a.label_set = h.label_set AND a.value = h.value WHERE coalesce(h.resolved, false)"
    ).fetchall()[0][0]
    if bad:
        log(f"label: ignored {bad} resolved human labels whose set or value is not configured")
    con.sql(
        f"""
        INSERT INTO _human
        SELECT id, label_set, value, conf FROM (
          SELECT *, row_number() OVER (PARTITION BY id, label_set ORDER BY conf DESC, ord) AS rk FROM (
            SELECT CAST(h.id AS VARCHAR) AS id, h.label_set, h.value, a.ord,
                   round(least(greatest(coalesce(CAST(h.confidence AS DOUBLE), 1.0), 0.0), 1.0), {DIGITS}) AS conf
            FROM _human_arrow h JOIN _allowed_arrow a ON a.label_set = h.label_set AND a.value = h.value
            WHERE coalesce(h.resolved, false)
          )
        ) WHERE rk = 1
        """
    )
    con.unregister("_human_arrow")
    con.unregister("_allowed_arrow")


# ------------------------------------------------------------------ rules


def _rule_expr(rule: LabelRule) -> str:
    """SQL for one rule's vote weight, over the columns t (lower-cased title + text), raw
    (title + text), url and host."""
    if rule.keywords:
        parts = []
        for kw in sorted({k for k in rule.keywords if k.strip()}):
            k = f"lower({sql_str(kw)})"
            # contains() is a fast scan; the replace-and-measure count runs only where it fires
            parts.append(f"CASE WHEN contains(t, {k}) THEN (length(t) - length(replace(t, {k}, ''))) // length({k}) "
                         "ELSE 0 END")
        return " + ".join(parts) or "0"
    if rule.regex:
        return f"len(list_filter(regexp_extract_all(raw, {sql_str(rule.regex)}, 0, 'i'), lambda m: m <> ''))"
    if rule.url:
        return f"CASE WHEN regexp_matches(coalesce(url, ''), {sql_str(rule.url)}) THEN 1 ELSE 0 END"
    conds = []
    for d in sorted({d.strip().strip(".").lower() for d in rule.domains or [] if d.strip().strip(".")}):
        conds.append(f"host = {sql_str(d)} OR ends_with(host, {sql_str('.' + d)})")
    return f"CASE WHEN {' OR '.join(conds)} THEN 1 ELSE 0 END" if conds else "0"


def _rule_votes(con: duckdb.DuckDBPyConnection, sets: list[LabelSet]) -> None:
    """``_rules``: (id, label_set, rule_value, rule_confidence) for every document a rule voted for,
    from one scan of the input computing every rule's weight (constant patterns: compiled once)."""
    con.sql("CREATE OR REPLACE TABLE _rules (id VARCHAR, label_set VARCHAR, rule_value VARCHAR, "
            "rule_confidence DOUBLE)")
    ruled = [s for s in sets if s.rules]
    if not ruled:
        return
    vote_lists = []
    for i, s in enumerate(ruled):
        per_value = []
        for v in s.values:
            exprs = [f"({_rule_expr(r)})" for r in s.rules if r.value == v]
            per_value.append("CAST(" + (" + ".join(exprs) if exprs else "0") + " AS BIGINT)")
        vote_lists.append(f"[{', '.join(per_value)}] AS v{i}")
    host = ("lower(rtrim(regexp_extract(coalesce(url, ''), "
            "'^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]+)', 1), '.'))")
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE _votes AS
        SELECT id, {', '.join(vote_lists)}
        FROM (SELECT id, url, lower(coalesce(title, '') || '\n' || coalesce(text, '')) AS t,
                     coalesce(title, '') || '\n' || coalesce(text, '') AS raw, {host} AS host
              FROM _label_in)
        """
    )
    for i, s in enumerate(ruled):
        values = "[" + ", ".join(sql_str(v) for v in s.values) + "]"
        con.sql(
            f"""
            INSERT INTO _rules
            SELECT id, {sql_str(s.name)}, {values}[list_position(v{i}, list_max(v{i}))],
                   round(list_max(v{i}) / list_sum(v{i}), {DIGITS})
            FROM _votes WHERE list_sum(v{i}) > 0
            """
        )
    con.sql("DROP TABLE _votes")


# ------------------------------------------------------------------ the classifier in the stage


def _training_rows(con: duckdb.DuckDBPyConnection, gold: pa.Table | None, s: LabelSet,
                   docs: str) -> tuple[list[str], list[str]]:
    """Texts and labels of set ``s``: gold rows labelled for it, and resolved human labels joined
    with the documents' texts (a person's label replaces a gold label of the same id). Sorted by id."""
    rows: dict[str, tuple[str, str]] = {}
    if gold is not None:
        for r in gold.select(["id", "title", "text", s.name]).to_pylist():
            if r[s.name] is not None:
                rows[r["id"]] = (model_text(r["title"], r["text"]), r[s.name])
    human = con.sql(
        f"SELECT h.id, d.title, d.text, h.value FROM _human h JOIN {docs} d ON d.id = h.id "
        f"WHERE h.label_set = {sql_str(s.name)} ORDER BY h.id"
    ).fetchall()
    for ident, title, text, value in human:
        rows[ident] = (model_text(title, text), value)
    ordered = [rows[k] for k in sorted(rows)]
    return [t for t, _ in ordered], [v for _, v in ordered]


def _predict(con: duckdb.DuckDBPyConnection, classifiers: dict[str, Classifier], n: int, batch_size: int,
             log) -> None:
    """``_model``: (id, label_set, model_value, model_confidence) for every document with a known
    token, per trained set. Texts are streamed from a second cursor in batches of ``batch_size``
    and tokenised once for all sets; only the predictions are kept."""
    con.sql("CREATE OR REPLACE TABLE _model (id VARCHAR, label_set VARCHAR, model_value VARCHAR, "
            "model_confidence DOUBLE)")
    if not classifiers:
        return
    cur = con.cursor()
    reader = cur.sql(
        "SELECT id, left(coalesce(title, '') || '\n' || coalesce(text, ''), "
        f"{MAX_MODEL_CHARS}) AS t FROM _label_in"
    ).to_arrow_reader(max(1, batch_size))
    done = 0
    for batch in reader:
        ids = batch.column(0)
        docs = [tokens(t or "") for t in batch.column(1).to_pylist()]
        for name in sorted(classifiers):
            clf = classifiers[name]
            best, conf = clf.predict(docs)
            keep = best >= 0
            values = np.asarray(clf.classes, dtype=object)[best[keep]]
            part = pa.table({
                "id": ids.filter(pa.array(keep)),
                "label_set": pa.array([name] * int(keep.sum()), pa.string()),
                "model_value": pa.array(values.tolist(), pa.string()),
                "model_confidence": pa.array(conf[keep], pa.float64()),
            })
            con.register("_pred_arrow", part)
            con.sql("INSERT INTO _model SELECT * FROM _pred_arrow")
            con.unregister("_pred_arrow")
        done += batch.num_rows
        log(f"label: classified {done}/{n} documents")
    cur.close()


# ------------------------------------------------------------------ combination and outputs


def _combine(con: duckdb.DuckDBPyConnection, sets: list[LabelSet]) -> None:
    """``label_details``: the evidence and the decision per (document, set), sorted."""
    con.sql("CREATE OR REPLACE TABLE label_details (id VARCHAR, label_set VARCHAR, value VARCHAR, source VARCHAR, "
            "confidence DOUBLE, rule_value VARCHAR, rule_confidence DOUBLE, model_value VARCHAR, "
            "model_confidence DOUBLE, human_value VARCHAR)")
    if not sets:
        return
    set_rows = " UNION ALL ".join(f"SELECT {sql_str(s.name)} AS label_set, {sql_str(s.default)} AS dflt" for s in sets)
    con.sql(
        f"""
        INSERT INTO label_details
        WITH ev AS (
          SELECT d.id, s.label_set, s.dflt, r.rule_value, r.rule_confidence, m.model_value, m.model_confidence,
                 h.value AS human_value, h.confidence AS human_confidence
          FROM (SELECT id FROM _label_in) d CROSS JOIN ({set_rows}) s
          LEFT JOIN _rules r ON r.id = d.id AND r.label_set = s.label_set
          LEFT JOIN _model m ON m.id = d.id AND m.label_set = s.label_set
          LEFT JOIN _human h ON h.id = d.id AND h.label_set = s.label_set
        ), decided AS (
          SELECT *, CASE
              WHEN human_value IS NOT NULL THEN 'human'
              WHEN rule_value IS NOT NULL AND rule_value = model_value THEN 'rule+model'
              WHEN rule_value IS NOT NULL AND (model_value IS NULL OR rule_confidence >= model_confidence) THEN 'rule'
              WHEN model_value IS NOT NULL THEN 'model'
              ELSE 'default' END AS source
          FROM ev
        )
        SELECT id, label_set,
               CASE source WHEN 'human' THEN human_value WHEN 'rule+model' THEN rule_value WHEN 'rule' THEN rule_value
                           WHEN 'model' THEN model_value ELSE dflt END AS value,
               source,
               CASE source WHEN 'human' THEN human_confidence
                           WHEN 'rule+model' THEN greatest(rule_confidence, model_confidence)
                           WHEN 'rule' THEN rule_confidence WHEN 'model' THEN model_confidence ELSE 0.0 END AS confidence,
               rule_value, rule_confidence, model_value, model_confidence, human_value
        FROM decided
        ORDER BY id, label_set
        """
    )


def _kept(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """``kept``: the input columns and, per set, value / source / confidence, in id order."""
    base = ", ".join(f'i."{c}"' for c in INPUT_COLUMNS)
    if not names:
        con.sql(f"CREATE OR REPLACE TABLE kept AS SELECT {base} FROM _label_in i ORDER BY i.id")
        return
    wide = ", ".join(
        f"any_value({col}) FILTER (WHERE label_set = {sql_str(name)}) AS \"{name}{suffix}\""
        for name in names for col, suffix in (("value", ""), ("source", "_source"), ("confidence", "_confidence"))
    )
    con.sql(f"CREATE OR REPLACE TEMP TABLE _wide AS SELECT id, {wide} FROM label_details GROUP BY id")
    labels = ", ".join(f'CAST(w."{c}" AS {t}) AS "{c}"' for c, t in schema.label_columns(names))
    con.sql(f"CREATE OR REPLACE TABLE kept AS SELECT {base}, {labels} FROM _label_in i JOIN _wide w USING (id) "
            "ORDER BY i.id")
    con.sql("DROP TABLE _wide")


def _extra(con: duckdb.DuckDBPyConnection, sets: list[LabelSet], train_rows: dict[str, int]) -> dict[str, int]:
    """Counts per set and value, per set and source, and the classifier's training rows."""
    got = {(s, v): int(c) for s, v, c in con.sql(
        "SELECT label_set, value, count(*) FROM label_details GROUP BY ALL ORDER BY ALL").fetchall()}
    src = {(s, v): int(c) for s, v, c in con.sql(
        "SELECT label_set, source, count(*) FROM label_details GROUP BY ALL ORDER BY ALL").fetchall()}
    out: dict[str, int] = {}
    for s in sets:
        for v in s.values:
            out[f"{s.name}:{v}"] = got.get((s.name, v), 0)
        for source in SOURCES:
            out[f"{s.name}_source:{source}"] = src.get((s.name, source), 0)
        out[f"{s.name}_model_train_rows"] = train_rows.get(s.name, 0)
    return out


# ------------------------------------------------------------------ as a stage of the graph
# Training is global and happens once per materialisation, only when its inputs changed (gold
# file, human labels, settings): the classifiers are kept beside the layer by fingerprint. Each
# part is then labelled as a pure function of its documents; the review export reads every part.

MODEL_VERSION = "1"


def annotation_files(inbox: Path) -> list[Path]:
    """Label Studio exports: waiting in ``inbox`` and imported before (``processed/``); every one
    is read each time, so the human labels are a pure function of these files."""
    files = []
    for d in (inbox / "processed", inbox):
        if d.is_dir():
            files += [p for p in d.iterdir() if p.is_file() and p.suffix == ".json" and not p.name.startswith(".")]
    waiting = {p.name for p in files if p.parent == inbox}
    # a file waiting again under an imported name supersedes the imported copy
    return sorted((p for p in files if p.parent == inbox or p.name not in waiting), key=lambda p: p.name)


def _prepare(ctx: StageContext) -> Prepared:
    import hashlib
    import pickle

    from dataset_platform import atomic
    from dataset_platform.stages.label import annotation as ann
    from dataset_platform.storage import sql_str, write_parquet

    settings, wd, con = ctx.settings, ctx.workdir, ctx.con
    files = annotation_files(wd.annotations_inbox)
    annotations = ann.read_exports(files, sets=settings.sets)
    con.register("_ann", annotations)
    write_parquet(con, "SELECT * FROM _ann ORDER BY doc_id, label_set, annotator",
                  wd.layer("human_annotations"), layer="human_annotations", unless_same=True)
    con.unregister("_ann")
    human = ann.resolve(annotations) if annotations.num_rows else None
    agreement = ann.agreement(annotations) if annotations.num_rows else {}
    if files:
        ctx.log(f"human labels: {annotations.num_rows} from {len(files)} Label Studio export(s); agreement "
                + (", ".join(f"{k}: {v.get('method')} kappa={v.get('kappa')}" for k, v in sorted(agreement.items()))
                   or "n/a"))
    h = hashlib.sha256(settings.model_dump_json().encode() + MODEL_VERSION.encode())
    if settings.gold:
        h.update(hashlib.sha256(Path(settings.gold).read_bytes()).digest())
    if human is not None:
        keyed = human.select(["id", "label_set", "value", "confidence", "resolved"]).sort_by(
            [("id", "ascending"), ("label_set", "ascending"), ("value", "ascending")])
        h.update(repr(keyed.to_pylist()).encode())
    fingerprint = h.hexdigest()[:32]
    store = wd.stage_state("labelled_documents", "models")
    path = store / f"{fingerprint}.pkl"
    models = stored_model(path, ctx.log,
                          f"label: classifiers {fingerprint[:12]} reused (gold, human labels and settings unchanged)",
                          "label: stored classifiers")
    if models is None:
        layer = wd.layer_files("deduplicated_documents")
        docs = f"read_parquet([{', '.join(sql_str(f) for f in layer)}])" if (layer and human is not None) else None
        models = train_models(con, docs, settings, human=human, log=ctx.log)
        atomic.write_bytes(path, pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL))
        for old in store.glob("*.pkl"):  # the classifiers of earlier inputs are not used again
            if old != path:
                old.unlink()
    counters = {"agreement": agreement, "annotation_files": [p.name for p in files],
                "human_annotations": annotations.num_rows,
                **{f"{k}_model_train_rows": v for k, v in models.train_rows.items()}}
    return Prepared(state=models, fingerprint=fingerprint, counters=counters)


def _run(ctx: StageContext, src: str) -> StageOutput:
    # (without prepared models - the CLI on a file - the classifiers are trained here on the gold
    # file and the input's own human labels: none)
    if ctx.state is None:
        res = run_label(ctx.con, src, ctx.settings, batch_size=ctx.batch_size, log=ctx.log)
    else:
        res = apply_labels(ctx.con, src, ctx.settings, ctx.state, batch_size=ctx.batch_size, log=ctx.log)
    return StageOutput(kept=ctx.con.table("kept"), rejected=ctx.con.table("rejected"), result=res,
                       extra={"details": ctx.con.sql("SELECT * FROM label_details ORDER BY id, label_set")})


def summarise(con: duckdb.DuckDBPyConnection, kept_sql: str, _rejected_sql: str, *, sets=None) -> dict:
    """Documents per label set and value, and per set and source, from the labelled rows."""
    out: dict[str, int] = {}
    cols = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {kept_sql}").fetchall()}
    for name in sorted(c for c in cols if f"{c}_source" in cols and f"{c}_confidence" in cols):
        for v, n in con.sql(f'SELECT "{name}", count(*) FROM {kept_sql} GROUP BY 1 ORDER BY 1').fetchall():
            out[f"{name}:{v}"] = int(n)
        for v, n in con.sql(f'SELECT "{name}_source", count(*) FROM {kept_sql} GROUP BY 1 ORDER BY 1').fetchall():
            out[f"{name}_source:{v}"] = int(n)
    return out


def _finish(ctx: StageContext, layer) -> dict:
    """The review export over every part's details; then imported exports move to processed/."""
    import os

    from dataset_platform.stages.label import annotation as ann
    from dataset_platform.storage import sql_str

    settings, wd, con = ctx.settings, ctx.workdir, ctx.con
    details = layer.files("details.parquet")
    kept = layer.files()
    tasks = []
    if details and kept:
        con.sql(f"CREATE OR REPLACE TEMP VIEW label_details AS SELECT * FROM "
                f"read_parquet([{', '.join(sql_str(f) for f in details)}])")
        con.sql(f"CREATE OR REPLACE TEMP VIEW _labelled AS SELECT * FROM "
                f"read_parquet([{', '.join(sql_str(f) for f in kept)}])")
        queue = ann.select_for_review(con, "label_details", settings.review, seed=settings.seed)
        tasks = ann.export_tasks(con, queue, "_labelled", "label_details", settings.sets)
    paths = ann.write_export(wd.annotation_export, tasks, ann.labeling_config(settings.sets))
    ctx.log(f"review: {len(tasks)} Label Studio task(s) written to {paths['tasks']}")
    done = wd.annotations_inbox / "processed"
    for p in annotation_files(wd.annotations_inbox):
        if p.parent == wd.annotations_inbox:
            done.mkdir(parents=True, exist_ok=True)
            os.replace(p, done / p.name)
    return {"review_tasks": len(tasks), "export": str(paths["tasks"])}


def _cli_settings(args, settings: LabelSettings) -> LabelSettings:
    if not settings.sets:
        raise ValueError(f"{args.config}: pipeline.labels.sets is empty: declare at least one label set")
    return settings.model_copy(update={"gold": str(Path(args.gold).resolve())}) if args.gold else settings


STAGE = Stage(
    name=NAME, input="deduplicated_documents", output="labelled_documents", settings=lambda p: p.labels,
    run=_run, prepare=_prepare, finish=_finish, summarise=summarise, extra_outputs=("details",),
    also_writes=("human_annotations",),
    passthrough=("source", "url", "title", "lang", "n_chars", "n_words", "content_hash"),
    cli_needs_config=True, parallel_parts=True,
    cli_options=(CliOption("--gold", {"default": None, "help": "JSONL of id, text and one field per label set: "
                                      "trains the classifiers (default: pipeline.labels.gold)"}),),
    cli_settings=_cli_settings,
    libraries=("scikit-learn",),
    description="Every document with a value, source (human / rule / model / rule+model / default) and confidence "
                "per label set; writes the Label Studio review tasks.",
)
