"""The quality model: a classifier scoring every cleaned document's quality, P(good) in 0..1.

Per batch, after the clean stage's rules: ``cleaned_documents`` -> ``scored_documents`` (the
cleaned columns + ``quality_score``). Below ``threshold`` a document is dropped (``mode: drop``,
rejected with rule ``quality_model`` and its score as value) or kept with ``quality_model``
added to its ``annotations`` (``mode: annotate``).

**Off until trained.** Without training data (no gold file, no reference source, no human label
of the label set) there is no model: every document passes with ``quality_score`` NULL and
nothing is dropped (a model trained on nothing would only add noise, and the default demo stays
as it was). Training data, all optional and combined (``config.QualityModelSettings``):

* (a) a **gold file**: JSONL with ``text`` and ``quality`` (``good`` / ``bad``, 1 / 0, true / false);
* (b) **human labels** of the label set ``label_set`` (default ``quality``) coming back from
  Label Studio (the exports the label stage imports, ``inbox/annotations/``): resolved labels of
  the documents, with their cleaned texts; a person's label replaces a gold or recipe label;
* (c) **reference sources** (the DCLM recipe): the cleaned documents of the named sources are
  positives; negatives are a stable sample (lowest ``md5(seed:id)``) of the other sources'
  cleaned documents and of the documents the clean stage's rules rejected (their extracted text).

The classifier (``train``) is a linear model over word unigrams and bigrams of our tokens
(:func:`features`: lower-cased words, punctuation marks and line breaks as tokens, so that menus,
boilerplate and word salad differ from prose). Chosen by measurement against fastText in
``bench/quality_eval.py`` (see BENCHMARKS.md). It is trained in ``prepare``, once per
materialisation and only when the training data or the settings changed: the model is stored in
``layers/scored_documents/models/<version>.pkl`` where the version is the fingerprint of the
training rows (ids, labels and text hashes), the settings and :data:`MODEL_VERSION`. That version
enters every part's chain (so a new model rescores every part and the same one none), is a
counter of the layer's materialisation and is named in the release's card with the threshold.

With reference sources the crawl sample is part of the training data, so a batch that changes
the sample retrains the model and rescores every part (and the layers below follow). Pin a model
with ``use_model: <version>`` to score new batches with it and stop retraining.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset_platform.contracts import schema
from dataset_platform.stages.base import (
    CliOption,
    Prepared,
    Stage,
    StageContext,
    StageOutput,
    finish_stage,
    stored_model,
    streamable_view,
)
from dataset_platform.storage import sql_str

NAME = "quality_model"
#: rejected_documents.rule and the annotation of a document below the threshold
RULE = "quality_model"
OUTPUT = "scored_documents"
#: bump when the features or the learner change
MODEL_VERSION = "1"
#: the classifier reads at most this many characters of a document (quality is clear early on,
#: and the cost per document stays bounded)
MAX_CHARS = 6_000
#: scores are rounded so that floating-point noise (BLAS threads, platforms) cannot change output
DIGITS = 6
GOOD, BAD = "good", "bad"
_GOLD_VALUES = {"good": GOOD, "1": GOOD, "true": GOOD, "bad": BAD, "0": BAD, "false": BAD}


class QualityGoldError(ValueError):
    """The quality gold file is malformed."""


# ------------------------------------------------------------------ features and the learner

# a token: a run of letters/digits, one punctuation or symbol character, or a line break
_TOKEN_RE = re.compile(r"[^\W_]+|[^\w\s]|\n")


def _bucket(x: float) -> int:
    return int(np.log2(1.0 + x))


def features(text: str | None) -> str:
    """The classifier's input: tokens of the first :data:`MAX_CHARS` characters, lower-cased,
    separated by spaces; a line break is the token ``_nl_`` (menus and lists are many short lines);
    then shape tokens: the number of lines, words per line and words per sentence, each as a
    log2 bucket (``_lines3``, ``_wpl5``, ``_wps4``), which tell a page's layout and prose apart
    from lists and run-on word salad whatever its words."""
    t = (text or "")[:MAX_CHARS]
    toks = _TOKEN_RE.findall(t.lower())
    lines = t.count("\n") + 1
    words = len(toks) - lines + 1
    sentences = t.count(". ") + t.count("? ") + t.count("! ") + 1
    shape = f" _lines{_bucket(lines)} _wpl{_bucket(words / lines)} _wps{_bucket(words / sentences)}"
    return " ".join(toks).replace("\n", "_nl_") + shape


def _ngrams(s: str) -> list[str]:
    """Unigrams and bigrams of a :func:`features` string."""
    t = s.split()
    return t + [a + " " + b for a, b in zip(t, t[1:])]


#: hashed feature space (2^20: few collisions for the n-grams of a web corpus, 8 MB of weights)
N_FEATURES = 2**20


@dataclass
class QualityModel:
    """A trained quality classifier; ``version`` is its fingerprint (the release card names it)."""

    version: str
    train_rows: int
    positives: int
    vectorizer: object
    tfidf: object
    model: object

    def score(self, texts: Sequence[str | None]) -> np.ndarray:
        """P(good) per text, rounded to :data:`DIGITS`."""
        x = self.tfidf.transform(self.vectorizer.transform([features(t) for t in texts]))
        return np.round(self.model.predict_proba(x)[:, 1], DIGITS)


def train(texts: Sequence[str], labels: Sequence[int], *, seed: int = 0, c: float = 4.0,
          version: str = "") -> QualityModel | str:
    """Train on ``texts`` with ``labels`` (1 good, 0 bad); returns the model or why none can be
    trained (fewer than two examples of each class). Unigrams and bigrams of :func:`features`,
    hashed (no vocabulary to build or look up: the scoring speed), TF-IDF (sublinear), logistic
    regression (L2, ``C=c``, balanced class weights). Deterministic: liblinear with
    ``random_state=seed``, rows in the caller's order."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=np.int8)
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    if pos < 2 or neg < 2:
        return f"needs >= 2 good and >= 2 bad examples (has good={pos}, bad={neg})"
    vec = HashingVectorizer(analyzer=_ngrams, n_features=N_FEATURES, alternate_sign=False, norm=None,
                            dtype=np.float64)
    tfidf = TfidfTransformer(sublinear_tf=True)
    x = tfidf.fit_transform(vec.transform([features(t) for t in texts]))
    model = LogisticRegression(C=c, class_weight="balanced", solver="liblinear", random_state=seed)
    model.fit(x, y)
    return QualityModel(version=version, train_rows=len(y), positives=pos, vectorizer=vec, tfidf=tfidf,
                        model=model)


# ------------------------------------------------------------------ training data


def read_gold(path: Path) -> pa.Table:
    """The quality gold file: (id, text, label) sorted by id; ``label`` 1 good, 0 bad. A line
    without ``id`` gets ``gold:<line>``. Raises :class:`QualityGoldError` naming the file and line."""
    from dataset_platform.text.jsonl import json_objects

    rows: dict[str, tuple[str, int]] = {}
    for no, where, obj in json_objects(Path(path), QualityGoldError, prefix="quality gold file ",
                                          what="a quality gold line"):
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise QualityGoldError(f"{where}: 'text' must be a non-empty string")
        raw = obj.get("quality", obj.get("label"))
        value = _GOLD_VALUES.get(str(raw).lower() if raw is not None else "")
        if value is None:
            raise QualityGoldError(f"{where}: 'quality' must be good / bad (or 1 / 0, true / false), got {raw!r}")
        ident = obj.get("id")
        ident = f"gold:{no}" if ident is None or ident == "" else str(ident)
        if ident in rows:
            raise QualityGoldError(f"{where}: id {ident!r} repeats")
        rows[ident] = (text, 1 if value == GOOD else 0)
    if not rows:
        raise QualityGoldError(f"{path}: no lines; write one JSON object per line with 'text' and 'quality'")
    ids = sorted(rows)
    return pa.table({"id": pa.array(ids, pa.string()), "text": pa.array([rows[i][0] for i in ids], pa.string()),
                     "label": pa.array([rows[i][1] for i in ids], pa.int8())})


def label_set_of(settings) -> object:
    """The Label Studio label set of the quality labels (values good, bad)."""
    from dataset_platform.config import LabelSet

    return LabelSet(name=settings.label_set, values=[GOOD, BAD], default=GOOD, model=False)


def _files_sql(files: Sequence[Path]) -> str | None:
    return f"read_parquet([{', '.join(sql_str(str(f)) for f in files)}])" if files else None


def human_labels(wd, settings) -> tuple[pa.Table | None, int]:
    """Resolved human labels of the quality label set from every Label Studio export (waiting in
    ``inbox/annotations/`` or imported before): (id, label) or None, and the annotation count."""
    from dataset_platform.stages.label import annotation as ann
    from dataset_platform.stages.label.stage import annotation_files

    files = annotation_files(wd.annotations_inbox)
    if not files:
        return None, 0
    annotations = ann.read_exports(files, sets=[label_set_of(settings)])
    if not annotations.num_rows:
        return None, 0
    res = ann.resolve(annotations).filter(pc.field("resolved"))
    ids = res.column("id").to_pylist()
    labels = [1 if v == GOOD else 0 for v in res.column("value").to_pylist()]
    return pa.table({"id": pa.array(ids, pa.string()), "label": pa.array(labels, pa.int8())}), annotations.num_rows


def training_rows(con: duckdb.DuckDBPyConnection, settings, *, docs_sql: str | None, rejected_sql: str | None,
                  extracted_sql: str | None, gold: pa.Table | None, human: pa.Table | None,
                  known_sources: Sequence[str] | None = None) -> dict[str, int]:
    """Create table ``_qm_train`` (id, text, key, label, origin) on ``con``, sorted by id, from the gold
    table, the resolved human labels (texts from ``docs_sql``) and, with reference sources, the
    DCLM recipe over ``docs_sql`` (cleaned documents: id, source, text) and the clean stage's
    rejects (``rejected_sql``: id, rule) with their extracted texts (``extracted_sql``). For one id,
    a person's label wins over the gold file, which wins over the recipe. ``text`` is NULL for the
    documents of ``docs_sql`` (read when training) and ``key`` identifies the text (the layer's
    ``text_hash``; md5 of others). Returns counts per origin."""
    refs = list(settings.reference_sources)
    if refs and known_sources is not None:
        unknown = sorted(set(refs) - set(known_sources))
        if unknown:
            raise ValueError(f"pipeline.quality_model.reference_sources: {unknown} are not sources of this config "
                             f"(sources: {sorted(known_sources)}); name sources declared under `sources`")
    con.sql("CREATE OR REPLACE TEMP TABLE _qm_rows (id VARCHAR, text VARCHAR, key VARCHAR, label TINYINT, "
            "origin VARCHAR, rank TINYINT)")
    n, seed = int(settings.max_per_kind), int(settings.seed)
    order = f"md5({sql_str(str(seed) + ':')} || id)"
    # documents of the layer are picked by their id, source and text hash only: their texts are read
    # when the model is trained (train_from_table), not on every materialisation
    key = "CAST(text_hash AS VARCHAR)"
    if docs_sql is not None and "text_hash" not in {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {docs_sql}").fetchall()}:
        key = "md5(CAST(text AS VARCHAR))"
    if refs and docs_sql is not None:
        in_refs = ", ".join(sql_str(r) for r in refs)
        con.sql(f"""INSERT INTO _qm_rows SELECT id, NULL, key, 1, 'reference', 3 FROM (
                      SELECT CAST(id AS VARCHAR) AS id, {key} AS key FROM {docs_sql}
                      WHERE source IN ({in_refs}) ORDER BY {order} LIMIT {n})""")
        con.sql(f"""INSERT INTO _qm_rows SELECT id, NULL, key, 0, 'crawl', 3 FROM (
                      SELECT CAST(id AS VARCHAR) AS id, {key} AS key FROM {docs_sql}
                      WHERE source NOT IN ({in_refs}) ORDER BY {order} LIMIT {n})""")
        if rejected_sql is not None and extracted_sql is not None:
            con.sql(f"""INSERT INTO _qm_rows SELECT id, text, md5(text), 0, 'rule_rejected', 3 FROM (
                          SELECT * FROM (
                            SELECT CAST(e.id AS VARCHAR) AS id, CAST(e.text AS VARCHAR) AS text
                            FROM (SELECT DISTINCT id FROM {rejected_sql} WHERE rule <> 'language_not_wanted') r
                            JOIN {extracted_sql} e ON e.id = r.id
                            WHERE e.text IS NOT NULL AND length(e.text) > 0)
                          ORDER BY {order} LIMIT {n})""")
    if gold is not None:
        con.register("_qm_gold", gold)
        con.sql("INSERT INTO _qm_rows SELECT id, text, md5(text), label, 'gold', 2 FROM _qm_gold")
        con.unregister("_qm_gold")
    if human is not None and docs_sql is not None:
        con.register("_qm_human", human)
        con.sql(f"""INSERT INTO _qm_rows SELECT h.id, NULL, d.key, h.label, 'human', 1
                    FROM _qm_human h JOIN (SELECT CAST(id AS VARCHAR) AS id, {key} AS key FROM {docs_sql}) d
                    ON d.id = h.id""")
        con.unregister("_qm_human")
    con.sql("""CREATE OR REPLACE TEMP TABLE _qm_train AS
               SELECT id, text, key, label, origin FROM _qm_rows
               QUALIFY row_number() OVER (PARTITION BY id ORDER BY rank) = 1 ORDER BY id""")
    con.sql("DROP TABLE _qm_rows")
    return dict(con.sql("SELECT origin, count(*) FROM _qm_train GROUP BY 1 ORDER BY 1").fetchall())


def training_fingerprint(con: duckdb.DuckDBPyConnection, settings) -> str:
    """The model's version: what it learns from (ids, labels and text keys of ``_qm_train``: the
    layer's text hash, md5 of other texts), how (the settings that shape training) and
    :data:`MODEL_VERSION`."""
    digest = con.sql("SELECT md5(coalesce(string_agg(id || ':' || label || ':' || key, ',' ORDER BY id), '')) "
                     "FROM _qm_train").fetchall()[0][0]
    how = {k: v for k, v in settings.model_dump(mode="json").items()
           if k in {"reference_sources", "max_per_kind", "label_set", "seed"}}
    return hashlib.sha256(json.dumps([MODEL_VERSION, how, digest], sort_keys=True).encode()).hexdigest()[:16]


def train_from_table(con: duckdb.DuckDBPyConnection, settings, version: str,
                     docs_sql: str | None = None) -> QualityModel | str:
    """Train on ``_qm_train``; the texts it picked from the layer are read from ``docs_sql`` now."""
    if docs_sql is None:
        rows = con.sql("SELECT text, label FROM _qm_train ORDER BY id").fetchall()
    else:
        rows = con.sql(f"""SELECT coalesce(t.text, CAST(d.text AS VARCHAR)), t.label FROM _qm_train t
                           LEFT JOIN (SELECT CAST(id AS VARCHAR) AS id, text FROM {docs_sql}
                                      WHERE CAST(id AS VARCHAR) IN (SELECT id FROM _qm_train WHERE text IS NULL)) d
                           ON d.id = t.id ORDER BY t.id""").fetchall()
    return train([t for t, _ in rows], [int(y) for _, y in rows], seed=int(settings.seed), version=version)


# ------------------------------------------------------------------ the stage


@dataclass(frozen=True)
class Scorer:
    """The prepared state: the model (None: no training data, the stage passes documents on)."""

    model: QualityModel | None
    why_none: str = ""


#: models kept beside the layer (the newest; releases name them by version): training removes older ones
KEEP_MODELS = 5


def models_dir(wd) -> Path:
    return wd.stage_state(OUTPUT, "models")


def _prepare(ctx: StageContext) -> Prepared:
    import pickle

    from dataset_platform import atomic

    settings, wd, con = ctx.settings, ctx.workdir, ctx.con
    if settings.use_model:
        return _pinned(ctx, settings.use_model)
    gold = read_gold(Path(settings.gold)) if settings.gold else None
    human, n_ann = human_labels(wd, settings)
    docs_sql = _files_sql(wd.layer_files("cleaned_documents"))
    known = [s.name for s in ctx.config.sources] if ctx.config is not None else None
    counts = training_rows(con, settings, docs_sql=docs_sql,
                           rejected_sql=_files_sql(wd.layer_files("cleaned_documents", "rejected.parquet")),
                           extracted_sql=_files_sql(wd.layer_files("extracted_documents")),
                           gold=gold, human=human, known_sources=known)
    if not counts:
        return Prepared(state=Scorer(None, "no training data configured"), fingerprint="",
                        counters={"model_version": None})
    version = training_fingerprint(con, settings)
    store = models_dir(wd)
    path = store / f"{version}.pkl"
    model = stored_model(path, ctx.log, f"quality_model: model {version} reused (training data and settings unchanged)",
                         "quality_model: stored model")
    if model is None:
        model = train_from_table(con, settings, version, docs_sql)
        if isinstance(model, str):
            ctx.log(f"quality_model: no model ({model}); documents pass unscored")
            return Prepared(state=Scorer(None, model), fingerprint=f"untrained:{version}",
                            counters={"model_version": None, "train_rows": counts, "why_no_model": model})
        atomic.write_bytes(path, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        ctx.log(f"quality_model: model {version} trained on {model.train_rows} documents "
                f"({', '.join(f'{k}={v}' for k, v in counts.items())})")
        old = sorted((p for p in store.glob("*.pkl") if p != path), key=lambda p: p.stat().st_mtime_ns)
        for p in old[:max(0, len(old) - (KEEP_MODELS - 1))]:
            p.unlink()
    con.sql("DROP TABLE IF EXISTS _qm_train")
    counters = {"model_version": version, "train_rows": counts, "human_annotations": n_ann,
                "threshold": settings.threshold, "mode": settings.mode}
    return Prepared(state=Scorer(model), fingerprint=version, counters=counters)


def _pinned(ctx: StageContext, version: str) -> Prepared:
    """The stored model ``version`` (``use_model``), without reading any training data."""
    import pickle

    store = models_dir(ctx.workdir)
    path = store / f"{version}.pkl"
    if not path.is_file():
        stored = sorted(p.stem for p in store.glob("*.pkl")) if store.is_dir() else []
        raise ValueError(f"pipeline.quality_model.use_model: no stored model {version} in {store} (stored: "
                         f"{', '.join(stored) or 'none'}); name one of them, or remove use_model to train")
    model = pickle.loads(path.read_bytes())
    ctx.log(f"quality_model: pinned model {version} (use_model; trained on {model.train_rows} documents)")
    return Prepared(state=Scorer(model), fingerprint=version,
                    counters={"model_version": version, "pinned": True, "train_rows": {"pinned": model.train_rows},
                              "threshold": ctx.settings.threshold, "mode": ctx.settings.mode})


def _column_list(con: duckdb.DuckDBPyConnection, src: str) -> str:
    """The cleaned columns of ``src`` (NULL for those a file of documents lacks), as ``i.``-qualified SQL."""
    have = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
    return ", ".join(f'i."{c}"' if c in have else f'CAST(NULL AS {t}) AS "{c}"'
                     for c, t in schema.layer_columns(OUTPUT) if c != "quality_score")


def score_relation(con: duckdb.DuckDBPyConnection, src: str, model: QualityModel, batch_size: int, log) -> int:
    """``_qm_scores`` (id, quality_score) for every document of ``src``, texts streamed in batches."""
    con.sql("CREATE OR REPLACE TEMP TABLE _qm_scores (id VARCHAR, quality_score DOUBLE)")
    streamable_view(con, "_qm_in", f"SELECT CAST(id AS VARCHAR) AS id, CAST(text AS VARCHAR) AS text FROM {src}")
    cur = con.cursor()
    done = 0
    try:
        reader = cur.sql("SELECT id, text FROM _qm_in").to_arrow_reader(max(1, batch_size))
        for batch in reader:
            scores = model.score(batch.column(1).to_pylist())
            con.register("_qm_batch", pa.table({"id": batch.column(0), "quality_score": pa.array(scores, pa.float64())}))
            con.sql("INSERT INTO _qm_scores SELECT * FROM _qm_batch")
            con.unregister("_qm_batch")
            done += batch.num_rows
    finally:
        cur.close()
    log(f"quality_model: scored {done} documents")
    return done


def run_quality(con: duckdb.DuckDBPyConnection, src: str, settings, model: QualityModel | None, *,
                batch_size: int = 2000, log=lambda _m: None) -> StageOutput:
    """Score (or pass on, without a model) the documents of ``src``: tables ``kept`` and ``rejected``."""
    cols = _column_list(con, src)
    n = con.sql(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    if model is None:
        con.sql(f"CREATE OR REPLACE TABLE kept AS SELECT {cols}, CAST(NULL AS DOUBLE) AS quality_score FROM {src} i")
        con.sql("CREATE OR REPLACE TABLE rejected AS SELECT CAST(NULL AS VARCHAR) AS id, CAST(NULL AS VARCHAR) AS source, "
                "CAST(NULL AS VARCHAR) AS url, CAST(NULL AS VARCHAR) AS stage, CAST(NULL AS VARCHAR) AS rule, "
                "CAST(NULL AS VARCHAR) AS value WHERE false")
    else:
        score_relation(con, src, model, batch_size, log)
        thr = float(settings.threshold)
        drop = settings.mode == "drop"
        annotated = cols.replace(
            'i."annotations"',
            f"CASE WHEN s.quality_score < {thr} THEN list_sort(list_append(coalesce(i.annotations, []), "
            f"{sql_str(RULE)})) ELSE i.annotations END AS annotations") if not drop else cols
        con.sql(f"""CREATE OR REPLACE TABLE kept AS SELECT {annotated}, s.quality_score FROM {src} i
                    JOIN _qm_scores s ON s.id = CAST(i.id AS VARCHAR)
                    {f'WHERE s.quality_score >= {thr}' if drop else ''} ORDER BY i.id""")
        source_url = ("i.source", "i.url") if 'i."source"' in cols else ("NULL", "NULL")
        con.sql(f"""CREATE OR REPLACE TABLE rejected AS
                    SELECT CAST(i.id AS VARCHAR) AS id, CAST({source_url[0]} AS VARCHAR) AS source,
                           CAST({source_url[1]} AS VARCHAR) AS url, {sql_str(NAME)} AS stage, {sql_str(RULE)} AS rule,
                           printf('%.6f', s.quality_score) AS value
                    FROM {src} i JOIN _qm_scores s ON s.id = CAST(i.id AS VARCHAR)
                    WHERE {'s.quality_score < ' + str(thr) if drop else 'false'} ORDER BY i.id""")
    res = finish_stage(con, NAME, input_rows=n)
    return StageOutput(kept=con.table("kept"), rejected=con.table("rejected"), result=res)


def _run(ctx: StageContext, src: str) -> StageOutput:
    if isinstance(ctx.state, Scorer):
        model = ctx.state.model
    else:  # the CLI on a file: trained here on the gold file alone
        if not ctx.settings.gold:
            raise ValueError("quality_model: no model to score with: pass --gold FILE (JSONL of text and quality "
                             "good/bad), or --config with pipeline.quality_model.gold")
        training_rows(ctx.con, ctx.settings.model_copy(update={"reference_sources": []}), docs_sql=None,
                      rejected_sql=None, extracted_sql=None, gold=read_gold(Path(ctx.settings.gold)), human=None)
        trained = train_from_table(ctx.con, ctx.settings, training_fingerprint(ctx.con, ctx.settings))
        if isinstance(trained, str):
            raise ValueError(f"{ctx.settings.gold}: no quality model can be trained: {trained}")
        model = trained
    return run_quality(ctx.con, src, ctx.settings, model, batch_size=ctx.batch_size, log=ctx.log)


def summarise(con: duckdb.DuckDBPyConnection, kept_sql: str, _rejected_sql: str) -> dict:
    """Scored documents of a part and those below the threshold kept with the annotation."""
    scored, annotated = con.sql(
        f"SELECT count(quality_score), count(*) FILTER (WHERE list_contains(annotations, {sql_str(RULE)})) "
        f"FROM {kept_sql}").fetchall()[0]
    return {"scored": int(scored), "annotated_below_threshold": int(annotated)}


def review_tasks(con: duckdb.DuckDBPyConnection, settings, version: str, *, scored_sql: str, rejected_sql: str | None,
                 input_sql: str, labelled: set[str]) -> list[dict]:
    """Label Studio tasks of the documents nearest the threshold (kept and dropped alike; those a
    person labelled already are left out), nearest first, then by id; each pre-filled with the
    model's verdict (``good`` at or above the threshold) and its score."""
    thr = float(settings.threshold)
    dropped = "" if rejected_sql is None else f"""
        UNION ALL SELECT CAST(r.id AS VARCHAR), i.title, i.text, i.url, CAST(r.value AS DOUBLE)
        FROM {rejected_sql} r JOIN {input_sql} i ON CAST(i.id AS VARCHAR) = CAST(r.id AS VARCHAR)
        WHERE r.rule = {sql_str(RULE)}"""
    con.register("_qm_labelled", pa.table({"id": pa.array(sorted(labelled), pa.string())}))
    rows = con.sql(f"""
        SELECT id, coalesce(title, ''), coalesce(text, ''), coalesce(url, ''), score FROM (
          SELECT CAST(id AS VARCHAR) AS id, title, text, url, quality_score AS score FROM {scored_sql}
          WHERE quality_score IS NOT NULL {dropped}) c
        WHERE id NOT IN (SELECT id FROM _qm_labelled)
        ORDER BY abs(score - {thr}), id LIMIT {int(settings.review_tasks)}""").fetchall()
    con.unregister("_qm_labelled")
    tasks = []
    for doc_id, title, text, url, score in rows:
        verdict = GOOD if score >= thr else BAD
        tasks.append({
            "data": {"doc_id": doc_id, "title": title, "text": text, "url": url, "reason": "near_threshold",
                     "quality_score": score},
            "predictions": [{"model_version": f"quality_model-{version}", "score": float(score), "result": [
                {"from_name": settings.label_set, "to_name": "text", "type": "choices",
                 "value": {"choices": [verdict]}}]}],
        })
    return tasks


def review_export_dir(wd) -> Path:
    return wd.annotation_export / "quality"


def _finish(ctx: StageContext, layer) -> dict:
    """The review export: the documents nearest the threshold, for people to label good or bad
    (``annotation/export/quality/``; their Label Studio export goes back to ``inbox/annotations/``)."""
    from dataset_platform.stages.label import annotation as ann

    state, settings, wd = ctx.state, ctx.settings, ctx.workdir
    dist = score_distribution(ctx.con, _files_sql(layer.files()), _files_sql(layer.files("rejected.parquet")),
                              settings.threshold) if layer.files() else {}
    if not isinstance(state, Scorer) or state.model is None or not settings.review_tasks or not layer.files():
        return {"review_tasks": 0, **dist}
    human, _n = human_labels(wd, settings)
    tasks = review_tasks(ctx.con, settings, state.model.version, scored_sql=_files_sql(layer.files()),
                         rejected_sql=_files_sql(layer.files("rejected.parquet")),
                         input_sql=_files_sql(wd.layer_files(STAGE.input)),
                         labelled=set(human.column("id").to_pylist()) if human is not None else set())
    paths = ann.write_export(review_export_dir(wd), tasks, ann.labeling_config([label_set_of(settings)]))
    ctx.log(f"quality review: {len(tasks)} Label Studio task(s) nearest the threshold written to {paths['tasks']}")
    return {"review_tasks": len(tasks), "export": str(paths["tasks"]), **dist}


#: bins of the score histogram (of width 1 / SCORE_BINS over 0..1)
SCORE_BINS = 10


def score_distribution(con: duckdb.DuckDBPyConnection, scored_sql: str | None, rejected_sql: str | None,
                       threshold: float) -> dict:
    """The scores of the whole layer, kept and dropped: ``score_bins`` (documents per bin of width
    1/:data:`SCORE_BINS`), ``scored``, ``mean_score`` and ``below_threshold``; {} when nothing is scored.
    Reads one column of each part (and the dropped documents' values)."""
    parts = []
    if scored_sql is not None:
        parts.append(f"SELECT quality_score AS s FROM {scored_sql} WHERE quality_score IS NOT NULL")
    if rejected_sql is not None:
        parts.append(f"SELECT CAST(value AS DOUBLE) AS s FROM {rejected_sql} WHERE rule = {sql_str(RULE)}")
    if not parts:
        return {}
    rows = con.sql(f"""SELECT least(CAST(floor(s * {SCORE_BINS}) AS INTEGER), {SCORE_BINS - 1}) AS b, count(*),
                              sum(s), count(*) FILTER (WHERE s < {float(threshold)})
                       FROM ({' UNION ALL '.join(parts)}) GROUP BY 1 ORDER BY 1""").fetchall()
    n = sum(r[1] for r in rows)
    if not n:
        return {}
    bins = [0] * SCORE_BINS
    for b, c, _s, _below in rows:
        bins[int(b)] = int(c)
    return {"score_bins": bins, "scored": int(n), "mean_score": round(sum(r[2] for r in rows) / n, DIGITS),
            "below_threshold": int(sum(r[3] for r in rows))}


def _cli_settings(args, settings):
    return settings.model_copy(update={"gold": str(Path(args.gold).resolve())}) if args.gold else settings


STAGE = Stage(
    name=NAME, input="cleaned_documents", output=OUTPUT, settings=lambda p: p.quality_model,
    run=_run, prepare=_prepare, finish=_finish, summarise=summarise,
    passthrough=tuple(c for c, _ in schema.layer_columns("cleaned_documents") if c not in {"id", "text"}),
    cli_options=(CliOption("--gold", {"default": None, "help": "JSONL of text and quality (good/bad): trains the "
                                      "model (default: pipeline.quality_model.gold)"}),),
    cli_settings=_cli_settings,
    version="1",
    libraries=("scikit-learn",),
    description="Every cleaned document scored by the quality model (P(good), quality_score); below the threshold "
                "dropped or annotated. Passes documents unscored until training data is configured.",
)
