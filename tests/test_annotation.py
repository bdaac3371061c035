"""The human-annotation round trip (stages/label/annotation.py): kappa against hand computations,
majority resolution, review selection, the task export, reading Label Studio exports (a stored
real export and synthetic edge cases), and the whole round trip through a real Label Studio
server (tests/labelstudio.py). Every document text here is written for these tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from labelstudio import label_studio  # noqa: F401  (the server fixture)
from sklearn.metrics import cohen_kappa_score

from dataset_platform.config import LabelSet, ReviewSettings
from dataset_platform.contracts.schema import LAYERS
from dataset_platform.stages.label.annotation import (
    agreement,
    cohen_kappa,
    export_tasks,
    fleiss_kappa,
    labeling_config,
    read_counts,
    read_exports,
    resolve,
    select_for_review,
    write_export,
)

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "labelstudio_export.json"

SETS = [
    LabelSet(name="topic", values=["sport", "tech", "food"], default="tech"),
    LabelSet(name="grade", values=["good", "bad"], default="good"),
]


# ---------------------------------------------------------------------------------------------
# kappa
# ---------------------------------------------------------------------------------------------

# Two raters, ten items, three categories.
#   item   1 2 3 4 5 6 7 8 9 10
#   r1     a a a a b b b c c c
#   r2     a a a b b b c c c b
# Observed agreement: items 1-3 (a), 5-6 (b), 8-9 (c) agree -> p_o = 7/10.
# Marginals: r1 a=4 b=3 c=3; r2 a=3 b=4 c=3.
# Expected agreement: p_e = (4*3 + 3*4 + 3*3) / 10^2 = 33/100.
# kappa = (70/100 - 33/100) / (1 - 33/100) = 37/67 = 0.55223...
COHEN_R1 = list("aaaabbbccc")
COHEN_R2 = list("aaabbbcccb")
COHEN_KAPPA = Fraction(37, 67)

# Four raters, five items, three categories: counts n_ij (raters choosing category j for item i).
#   item  counts    sum n_ij^2   P_i = (sum n_ij^2 - 4) / (4*3)
#   1     4 0 0     16           12/12
#   2     2 2 0      8            4/12
#   3     0 3 1     10            6/12
#   4     1 1 2      6            2/12
#   5     0 0 4     16           12/12
# P = (12+4+6+2+12) / 12 / 5 = 36/60 = 3/5.
# Category totals 7, 6, 7 of 20 ratings: P_e = (49 + 36 + 49) / 400 = 67/200.
# kappa = (3/5 - 67/200) / (1 - 67/200) = (53/200) / (133/200) = 53/133 = 0.39849...
FLEISS = np.array([[4, 0, 0], [2, 2, 0], [0, 3, 1], [1, 1, 2], [0, 0, 4]])
FLEISS_KAPPA = Fraction(53, 133)

# Unequal raters per item (the generalisation): two categories.
#   item  counts  n_i  P_i
#   1     2 0     2    (4 - 2) / (2*1) = 1
#   2     1 1     2    (2 - 2) / (2*1) = 0
#   3     0 3     3    (9 - 3) / (3*2) = 1
# P = 2/3; totals 3, 4 of 7: P_e = (9 + 16) / 49 = 25/49.
# kappa = (2/3 - 25/49) / (24/49) = (23/147) * (49/24) = 23/72 = 0.31944...
FLEISS_UNEQUAL = np.array([[2, 0], [1, 1], [0, 3]])
FLEISS_UNEQUAL_KAPPA = Fraction(23, 72)


def test_cohen_kappa_matches_hand_computation_and_sklearn():
    k = cohen_kappa(COHEN_R1, COHEN_R2)
    assert k == pytest.approx(float(COHEN_KAPPA), abs=1e-12)
    assert k == pytest.approx(cohen_kappa_score(COHEN_R1, COHEN_R2), abs=1e-12)
    assert cohen_kappa(COHEN_R1, COHEN_R1) == 1.0
    # one category used by both for everything: no disagreement possible, still perfect
    assert cohen_kappa(["x"] * 4, ["x"] * 4) == 1.0
    # systematic disagreement is below chance
    assert cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="different numbers"):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_matches_hand_computation():
    assert fleiss_kappa(FLEISS) == pytest.approx(float(FLEISS_KAPPA), abs=1e-12)
    assert fleiss_kappa(FLEISS_UNEQUAL) == pytest.approx(float(FLEISS_UNEQUAL_KAPPA), abs=1e-12)
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == 1.0
    assert fleiss_kappa(np.array([[4, 0, 0], [4, 0, 0]])) == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        fleiss_kappa(np.array([[1, 0], [2, 0]]))


def _annotations(rows: list[tuple[str, str, str, str]]) -> pa.Table:
    """(doc_id, label_set, annotator, value) -> a human_annotations table."""
    cols = {name: [] for name, _ in LAYERS["human_annotations"]}
    for i, (d, s, who, v) in enumerate(rows):
        for k, x in zip(("doc_id", "label_set", "annotator", "value"), (d, s, who, v)):
            cols[k].append(x)
        cols["annotation_id"].append(i + 1)
        cols["task_id"].append(int(d[1:]) if d[1:].isdigit() else 0)
        cols["updated_at"].append("2026-01-01T00:00:00Z")
        cols["file"].append("test.json")
    return pa.table(cols).cast(pa.schema([(n, pa.int64() if t == "BIGINT" else pa.string())
                                          for n, t in LAYERS["human_annotations"]]))


def test_agreement_picks_cohen_for_two_and_fleiss_for_more():
    rows = [(f"d{i}", "topic", who, v) for i in range(10)
            for who, v in (("ann-a", COHEN_R1[i]), ("ann-b", COHEN_R2[i]))]
    rows.append(("d99", "topic", "ann-a", "a"))  # one annotator only: not an agreement item
    # Fleiss fixture as ratings of four people
    cats = ["x", "y", "z"]
    for i, counts in enumerate(FLEISS):
        raters = iter(["p1", "p2", "p3", "p4"])
        for j, n in enumerate(counts):
            rows += [(f"d{i}", "grade", next(raters), cats[j]) for _ in range(n)]
    rows.append(("d0", "lonely", "p1", "x"))
    rows += [("d0", "pair", "p1", "x"), ("d0", "pair", "p2", "y")]
    got = agreement(_annotations(rows))
    assert list(got) == ["grade", "lonely", "pair", "topic"]
    assert got["topic"]["method"] == "cohen" and got["topic"]["items"] == 10 and got["topic"]["annotators"] == 2
    assert got["topic"]["kappa"] == pytest.approx(float(COHEN_KAPPA), abs=1e-12)
    assert got["grade"]["method"] == "fleiss" and got["grade"]["items"] == 5 and got["grade"]["annotators"] == 4
    assert got["grade"]["kappa"] == pytest.approx(float(FLEISS_KAPPA), abs=1e-12)
    assert got["lonely"] == {"method": None, "kappa": None, "items": 0, "annotators": 0}
    assert got["pair"] == {"method": "cohen", "kappa": None, "items": 1, "annotators": 2}


# ---------------------------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------------------------

def test_resolve_majority_ties_and_kept_disagreements():
    ann = _annotations([
        ("d1", "topic", "a", "sport"), ("d1", "topic", "b", "sport"), ("d1", "topic", "c", "tech"),
        ("d2", "topic", "a", "sport"), ("d2", "topic", "b", "tech"),  # tie
        ("d3", "topic", "a", "food"),  # single annotator
        ("d1", "grade", "a", "good"), ("d1", "grade", "b", "good"),
        ("d4", "topic", "a", "tech"), ("d4", "topic", "b", "food"), ("d4", "topic", "c", "sport"),  # 3-way tie
    ])
    got = resolve(ann)
    assert got.column_names == ["id", "label_set", "value", "confidence", "annotators", "resolved"]
    rows = {(r["id"], r["label_set"]): r for r in got.to_pylist()}
    assert [(r["id"], r["label_set"]) for r in got.to_pylist()] == sorted(rows)
    assert rows[("d1", "topic")] == {"id": "d1", "label_set": "topic", "value": "sport",
                                     "confidence": pytest.approx(2 / 3), "annotators": 3, "resolved": True}
    assert rows[("d2", "topic")]["resolved"] is False and rows[("d2", "topic")]["value"] is None
    assert rows[("d2", "topic")]["confidence"] == 0.5
    assert rows[("d3", "topic")] == {"id": "d3", "label_set": "topic", "value": "food", "confidence": 1.0,
                                     "annotators": 1, "resolved": True}
    assert rows[("d1", "grade")]["value"] == "good" and rows[("d1", "grade")]["confidence"] == 1.0
    assert rows[("d4", "topic")]["resolved"] is False and rows[("d4", "topic")]["annotators"] == 3
    # resolution does not touch the annotations: the minority label of d1 is still there
    assert ("d1", "topic", "c", "tech") in set(zip(*(ann.column(c).to_pylist()
                                                     for c in ("doc_id", "label_set", "annotator", "value"))))
    assert resolve(ann).equals(got)  # deterministic


# ---------------------------------------------------------------------------------------------
# selection and export
# ---------------------------------------------------------------------------------------------

def _details(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> str:
    """rows: (id, label_set, value, source, confidence, rule_value, model_value)."""
    con.sql("CREATE OR REPLACE TABLE details (id VARCHAR, label_set VARCHAR, value VARCHAR, source VARCHAR, "
            "confidence DOUBLE, rule_value VARCHAR, model_value VARCHAR)")
    if rows:
        con.executemany("INSERT INTO details VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return "details"


def _audit_hash(seed: int, doc_id: str) -> float:
    """The audit draw computed independently of the SQL: md5(seed:id), first 60 bits / 2^60."""
    return int(hashlib.md5(f"{seed}:{doc_id}".encode()).hexdigest()[:15], 16) / 2**60


def _selection_rows() -> list[tuple]:
    rows = [
        ("low1", "topic", "tech", "rule", 0.30, "tech", None), ("low1", "grade", "good", "model", 0.90, None, "good"),
        ("low2", "topic", "food", "model", 0.50, None, "food"), ("low2", "grade", "bad", "rule", 0.95, "bad", None),
        ("low3", "topic", "tech", "default", 0.0, None, None), ("low3", "grade", "good", "model", 0.70, None, "good"),
        # low only through a NULL confidence
        ("lownull", "topic", "tech", "rule", None, "tech", None), ("lownull", "grade", "good", "rule", 0.9, "good", None),
        # confident, but rule and model disagree
        ("dis1", "topic", "sport", "rule+model", 0.80, "sport", "tech"), ("dis1", "grade", "good", "rule", 0.9, "good", None),
        ("dis2", "topic", "sport", "rule+model", 0.70, "sport", "food"), ("dis2", "grade", "good", "rule", 0.9, "good", None),
        # a person labelled every set (even with low confidence): never again
        ("human1", "topic", "sport", "human", 0.5, "tech", "food"), ("human1", "grade", "bad", "human", 0.5, None, None),
        # a person labelled topic; grade is still automatic and uncertain: reviewed for grade
        ("half", "topic", "sport", "human", 1.0, "tech", "food"), ("half", "grade", "bad", "rule", 0.2, "bad", None),
        # a person labelled topic, grade confident: not queued, and never audited
        ("halfok", "topic", "sport", "human", 1.0, "tech", "food"), ("halfok", "grade", "bad", "rule", 0.9, "bad", None),
    ]
    for i in range(400):  # confident, agreeing: only the audit can pick them
        rows += [(f"ok{i:03d}", "topic", "tech", "rule+model", 0.95, "tech", "tech"),
                 (f"ok{i:03d}", "grade", "good", "model", 0.9, None, "good")]
    return rows


def test_select_for_review_reasons_order_and_cap():
    con = duckdb.connect()
    details = _details(con, _selection_rows())
    review = ReviewSettings(min_confidence=0.6, audit_fraction=0.1, max_tasks=500)
    assert select_for_review(con, details, review, seed=7) == "review_queue"
    q = con.sql("SELECT id, reason, priority FROM review_queue ORDER BY priority").fetchall()
    assert [p for _i, _r, p in q] == list(range(1, len(q) + 1))
    # low confidence first, lowest confidence first (NULL counts as 0, ties by id), then disagreements
    # (lowest confidence first), then the audit sample in (confidence, id) order
    assert q[:7] == [
        ("low3", "low_confidence", 1), ("lownull", "low_confidence", 2), ("half", "low_confidence", 3),
        ("low1", "low_confidence", 4), ("low2", "low_confidence", 5),
        ("dis2", "sources_disagree", 6), ("dis1", "sources_disagree", 7),
    ]
    audited = [i for i, r, _p in q if r == "audit"]
    expected = sorted(f"ok{i:03d}" for i in range(400) if _audit_hash(7, f"ok{i:03d}") < 0.1)
    assert audited == expected and 20 < len(audited) < 70  # ~10 % of 400
    ids = {i for i, _r, _p in q}
    assert "human1" not in ids and "halfok" not in ids

    # the same inputs in another order, another connection: the same queue
    con2 = duckdb.connect()
    details2 = _details(con2, list(reversed(_selection_rows())))
    select_for_review(con2, details2, review, seed=7)
    assert con2.sql("SELECT * FROM review_queue ORDER BY priority").fetchall() == q
    # another seed: another audit sample
    select_for_review(con2, details2, review, seed=8)
    other = [i for i, r in con2.sql("SELECT id, reason FROM review_queue ORDER BY priority").fetchall() if r == "audit"]
    assert other != audited and other == sorted(f"ok{i:03d}" for i in range(400) if _audit_hash(8, f"ok{i:03d}") < 0.1)

    # the cap keeps the first by priority
    select_for_review(con, details, ReviewSettings(min_confidence=0.6, audit_fraction=0.1, max_tasks=6), seed=7)
    assert con.sql("SELECT * FROM review_queue ORDER BY priority").fetchall() == q[:6]
    # audit off, nothing uncertain: empty queue with the right columns
    _details(con, [r for r in _selection_rows() if r[0].startswith("ok")])
    select_for_review(con, "details", ReviewSettings(audit_fraction=0.0), seed=7)
    assert con.sql("SELECT * FROM review_queue").fetchall() == []
    assert con.sql("SELECT * FROM review_queue").columns == ["id", "reason", "priority"]
    # everything audited when the fraction is 1
    select_for_review(con, "details", ReviewSettings(audit_fraction=1.0, max_tasks=1000), seed=7)
    assert con.sql("SELECT count(*), min(reason), max(reason) FROM review_queue").fetchall() == [(400, "audit", "audit")]


def test_select_for_review_is_set_based_on_many_rows():
    """200k label rows through the same SQL: finishes quickly, ~audit_fraction of them audited."""
    con = duckdb.connect()
    con.sql("""
        CREATE TABLE details AS
        SELECT 'doc' || lpad(CAST(i AS VARCHAR), 7, '0') AS id, s AS label_set, 'v' AS value,
               CASE WHEN i % 1000 = 0 THEN 'human' ELSE 'rule' END AS source,
               CASE WHEN i % 97 = 0 THEN 0.1 ELSE 0.9 END AS confidence,
               'v' AS rule_value, CASE WHEN i % 89 = 0 THEN 'w' ELSE 'v' END AS model_value
        FROM range(100000) t(i), (VALUES ('topic'), ('grade')) s(s)
    """)
    select_for_review(con, "details", ReviewSettings(min_confidence=0.6, audit_fraction=0.02, max_tasks=10**6), seed=1)
    by_reason = dict(con.sql("SELECT reason, count(*) FROM review_queue GROUP BY reason").fetchall())
    human = 100  # i % 1000 = 0: every set human
    low = len([i for i in range(100000) if i % 97 == 0 and i % 1000 != 0])
    dis = len([i for i in range(100000) if i % 89 == 0 and i % 97 != 0 and i % 1000 != 0])
    assert by_reason["low_confidence"] == low and by_reason["sources_disagree"] == dis
    rest = 100000 - human - low - dis
    assert abs(by_reason["audit"] - 0.02 * rest) < 5 * (0.02 * rest) ** 0.5


DOCS = [
    # (id, title, text, url): written for these tests
    ("d01", "Late goal wins the cup", "The home side scored in the last minute and lifted the trophy.", "https://example.test/a"),
    ("d02", "A faster laptop chip", "The new processor runs cooler and the battery lasts a full day.", "https://example.test/b"),
    ("d03", "Bread at home", "Flour, water, salt and patience: the loaf rises overnight in a cool kitchen.", "https://example.test/c"),
    ("d04", "Stadium gets fibre", "Fans at the stadium can now stream replays on a new wireless network.", "https://example.test/d"),
    ("d05", "Market soup", "Leeks and potatoes from the market simmer for an hour with a bay leaf.", "https://example.test/e"),
    ("d06", "Robots in the garden", "A small robot mows the lawn and sends a photo of every weed it finds.", None),
]
# automatic labels: (id, set, value, source, confidence, rule_value, model_value)
AUTO = [
    ("d01", "topic", "sport", "rule+model", 0.9, "sport", "sport"), ("d01", "grade", "good", "model", 0.55, None, "good"),
    ("d02", "topic", "tech", "model", 0.4, None, "tech"), ("d02", "grade", "good", "model", 0.8, None, "good"),
    ("d03", "topic", "tech", "rule+model", 0.7, "food", "tech"), ("d03", "grade", "bad", "default", 0.0, None, None),
    ("d04", "topic", "sport", "rule+model", 0.8, "sport", "tech"), ("d04", "grade", "good", "model", 0.9, None, "good"),
    ("d05", "topic", "food", "rule", 0.65, "food", None), ("d05", "grade", "good", "model", 0.62, None, "good"),
    ("d06", "topic", "tech", "model", 0.3, None, "tech"), ("d06", "grade", "retired", "model", 0.3, None, "retired"),
]


def _tasks_for(con: duckdb.DuckDBPyConnection, review: ReviewSettings) -> list[dict]:
    con.sql("CREATE OR REPLACE TABLE docs (id VARCHAR, title VARCHAR, text VARCHAR, url VARCHAR)")
    con.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", DOCS)
    details = _details(con, AUTO)
    queue = select_for_review(con, details, review, seed=3)
    return export_tasks(con, queue, "docs", details, SETS)


def test_export_tasks_and_write_export(tmp_path):
    con = duckdb.connect()
    tasks = _tasks_for(con, ReviewSettings(min_confidence=0.6, audit_fraction=1.0, max_tasks=100))
    assert [t["data"]["doc_id"] for t in tasks] == ["d03", "d06", "d02", "d01", "d04", "d05"]
    assert [t["data"]["reason"] for t in tasks] == ["low_confidence"] * 4 + ["sources_disagree", "audit"]
    d03 = tasks[0]
    assert d03["data"] == {"doc_id": "d03", "title": "Bread at home", "text": DOCS[2][2], "url": "https://example.test/c",
                           "reason": "low_confidence"}
    assert d03["predictions"] == [{"model_version": "dataset_platform", "score": 0.0, "result": [
        {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["tech"]}},
        {"from_name": "grade", "to_name": "text", "type": "choices", "value": {"choices": ["bad"]}},
    ]}]
    # a value that is no longer allowed is not pre-filled; a missing url becomes ""
    d06 = tasks[1]
    assert [r["from_name"] for r in d06["predictions"][0]["result"]] == ["topic"] and d06["data"]["url"] == ""
    assert tasks[3]["predictions"][0]["score"] == 0.55

    xml = labeling_config(SETS)
    root = ET.fromstring(xml)
    assert root.tag == "View"
    assert [(e.tag, e.get("name")) for e in root if e.tag in ("Text", "Choices")] == [
        ("Text", "text"), ("Choices", "topic"), ("Choices", "grade")]
    topic = root.find("Choices[@name='topic']")
    assert topic.attrib == {"name": "topic", "toName": "text", "choice": "single", "showInline": "true"}
    assert [c.get("value") for c in topic] == ["sport", "tech", "food"]
    assert root.find("Header").get("value") == "$title"

    paths = write_export(tmp_path / "review", tasks, xml)
    assert json.loads(paths["tasks"].read_text(encoding="utf-8")) == tasks
    assert paths["config"].read_text(encoding="utf-8") == xml
    readme = paths["readme"].read_text(encoding="utf-8")
    assert "inbox/annotations/" in readme and "tasks.json" in readme and '"JSON"' in readme
    assert sorted(p.name for p in (tmp_path / "review").iterdir()) == ["README.txt", "labeling_config.xml", "tasks.json"]
    first = paths["tasks"].read_bytes()
    write_export(tmp_path / "review", _tasks_for(duckdb.connect(), ReviewSettings(min_confidence=0.6, audit_fraction=1.0)), xml)
    assert paths["tasks"].read_bytes() == first  # deterministic


# ---------------------------------------------------------------------------------------------
# reading exports
# ---------------------------------------------------------------------------------------------

# What the two annotators do in the round trip (and so what the stored export holds).
# A labels all six documents; on d03 A first answers (tech, good), then submits a second
# annotation (food, bad): the newer one counts. B labels d01-d05 and skips d06.
PLAN = {
    "A": {"d01": ("sport", "good"), "d02": ("tech", "good"), "d03": ("food", "bad"), "d04": ("sport", "good"),
          "d05": ("food", "bad"), "d06": ("tech", "good")},
    "B": {"d01": ("sport", "good"), "d02": ("tech", "bad"), "d03": ("food", "bad"), "d04": ("tech", "good"),
          "d05": ("food", "good")},
}
A_FIRST_D03 = ("tech", "good")
# Agreement over d01-d05 (both annotators), by hand:
#   topic  A: sport tech food sport food   B: sport tech food tech food
#          p_o = 4/5; A sport 2 tech 1 food 2, B sport 1 tech 2 food 2: p_e = (2+2+4)/25 = 8/25
#          kappa = (4/5 - 8/25) / (17/25) = 12/17
#   grade  A: good good bad good bad   B: good bad bad good good
#          p_o = 3/5; both good 3 bad 2: p_e = (9+4)/25 = 13/25; kappa = (2/25) / (12/25) = 1/6
PLAN_KAPPA = {"topic": Fraction(12, 17), "grade": Fraction(1, 6)}
# majority: (value or None on a tie, confidence, annotators)
PLAN_RESOLVED = {
    ("d01", "topic"): ("sport", 1.0, 2), ("d01", "grade"): ("good", 1.0, 2),
    ("d02", "topic"): ("tech", 1.0, 2), ("d02", "grade"): (None, 0.5, 2),
    ("d03", "topic"): ("food", 1.0, 2), ("d03", "grade"): ("bad", 1.0, 2),
    ("d04", "topic"): (None, 0.5, 2), ("d04", "grade"): ("good", 1.0, 2),
    ("d05", "topic"): ("food", 1.0, 2), ("d05", "grade"): (None, 0.5, 2),
    ("d06", "topic"): ("tech", 1.0, 1), ("d06", "grade"): ("good", 1.0, 1),
}


def _check_plan(table: pa.Table, who: dict[str, str]) -> None:
    """``table`` (read from a real export) holds exactly what PLAN says; ``who``: plan name -> annotator."""
    assert table.schema == pa.schema([(n, pa.int64() if t == "BIGINT" else pa.string()) for n, t in LAYERS["human_annotations"]])
    got = sorted((r["doc_id"], r["label_set"], r["annotator"], r["value"]) for r in table.to_pylist())
    want = sorted((d, s, who[p], v) for p, docs in PLAN.items() for d, vals in docs.items()
                  for s, v in zip(("topic", "grade"), vals))
    assert got == want
    rows = table.to_pylist()
    assert [(r["doc_id"], r["label_set"], r["annotator"]) for r in rows] == sorted(
        (r["doc_id"], r["label_set"], r["annotator"]) for r in rows)
    assert all(r["annotation_id"] > 0 and r["task_id"] > 0 and r["updated_at"] for r in rows)
    # d03 by A: the second annotation (higher id) won over the first
    a03 = [r for r in rows if r["doc_id"] == "d03" and r["annotator"] == who["A"]]
    assert {r["value"] for r in a03} == {"food", "bad"}
    counts = read_counts(table)
    assert counts["cancelled"] == 1 and counts["superseded"] == 2 and counts["rows"] == 22
    assert counts["tasks"] == 6 and counts["annotations"] == 13

    res = {(r["id"], r["label_set"]): (r["value"], r["confidence"], r["annotators"]) for r in resolve(table).to_pylist()}
    assert res == PLAN_RESOLVED
    ag = agreement(table)
    for s in ("topic", "grade"):
        a = [PLAN["A"][d][0 if s == "topic" else 1] for d in ("d01", "d02", "d03", "d04", "d05")]
        b = [PLAN["B"][d][0 if s == "topic" else 1] for d in ("d01", "d02", "d03", "d04", "d05")]
        assert ag[s] == {"method": "cohen", "kappa": pytest.approx(float(PLAN_KAPPA[s]), abs=1e-12), "items": 5,
                         "annotators": 2}
        assert ag[s]["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_read_stored_label_studio_export(tmp_path):
    """The export of the round trip, as Label Studio 1.23 wrote it (completed_by: user ids)."""
    table = read_exports([FIXTURE], SETS)
    _check_plan(table, {"A": "1", "B": "2"})
    assert set(table.column("file").to_pylist()) == {FIXTURE.name}
    # a re-export beside the first: nothing doubles; a later change by B wins
    tasks = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for t in tasks:
        for a in t["annotations"]:
            if t["data"]["doc_id"] == "d04" and a["completed_by"] == 2:
                a["result"][0]["value"]["choices"] = ["sport"]
                a["updated_at"] = "2099-01-01T00:00:00.000000Z"
    (tmp_path / "a-first.json").write_text(FIXTURE.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "b-later.json").write_text(json.dumps(tasks), encoding="utf-8")
    both = read_exports(sorted(tmp_path.glob("*.json")), SETS)
    assert both.num_rows == 22 and read_counts(both)["superseded"] == 2 + 2 + 22
    d04 = {(r["label_set"], r["annotator"]): r for r in both.to_pylist() if r["doc_id"] == "d04"}
    assert d04[("topic", "2")]["value"] == "sport" and d04[("topic", "2")]["file"] == "b-later.json"
    assert d04[("grade", "2")]["value"] == "good"
    assert agreement(both)["topic"]["kappa"] == pytest.approx(1.0)


def _task(tid, doc_id, *annotations, **data):
    return {"id": tid, "data": ({"doc_id": doc_id} if doc_id is not None else {}) | data, "annotations": list(annotations)}


def _ann(aid, who, updated, *choices, cancelled=False, extra=()):
    result = [{"from_name": s, "to_name": "text", "type": "choices", "value": {"choices": v if isinstance(v, list) else [v]}}
              for s, v in choices]
    return {"id": aid, "completed_by": who, "result": result + list(extra), "was_cancelled": cancelled,
            "updated_at": updated, "created_at": updated}


def test_read_exports_edge_cases(tmp_path):
    export = [
        _task(1, "d1",
              _ann(10, {"id": 5, "email": "ann@example.test"}, "2026-03-01T10:00:00Z", ("topic", "sport"),
                   extra=[{"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": ["hm"]}}]),
              _ann(11, {"id": 6}, "2026-03-01T10:00:00Z", ("topic", "tech")),
              _ann(12, 7, "2026-03-01T10:00:00Z", ("topic", "food"), cancelled=True),
              _ann(13, 8, "2026-03-01T10:00:00Z", ("topic", []), ("grade", ["good", "bad"]))),
        _task(2, None, _ann(20, 5, "2026-03-01T10:00:00Z", ("topic", "sport"))),  # not one of ours
        # the same person twice on one task: the newer answer (offsets compared as instants) counts
        _task(3, "d3",
              _ann(30, 9, "2026-03-01T12:00:00+02:00", ("topic", "sport")),
              _ann(31, 9, "2026-03-01T11:00:00Z", ("topic", "tech")),
              _ann(32, 9, "2026-03-01T10:30:00Z", ("topic", "food"))),
        _task(4, "d4", _ann(40, 5, "2026-03-01T10:00:00Z", ("colour", "red"), ("topic", "weird"), ("grade", "good"))),
        _task(5, "d5", _ann(50, None, "2026-03-01T10:00:00Z", ("topic", "sport"))),
    ]
    f = tmp_path / "export.json"
    f.write_text(json.dumps(export), encoding="utf-8")

    loose = read_exports([f])  # no sets: every choices row kept
    rows = {(r["doc_id"], r["label_set"], r["annotator"]): r["value"] for r in loose.to_pylist()}
    assert rows == {("d1", "topic", "ann@example.test"): "sport", ("d1", "topic", "6"): "tech",
                    ("d3", "topic", "9"): "tech", ("d4", "colour", "5"): "red", ("d4", "topic", "5"): "weird",
                    ("d4", "grade", "5"): "good"}
    c = read_counts(loose)
    assert (c["tasks"], c["annotations"], c["tasks_without_doc_id"], c["cancelled"], c["non_choice_results"],
            c["empty_choices"], c["multi_choice"], c["superseded"], c["no_annotator"]) == (5, 9, 1, 1, 1, 1, 1, 2, 1)
    assert c["rows"] == 6 and c["unknown_label_set"] == 0

    strict = read_exports([f], SETS)
    assert {(r["doc_id"], r["label_set"]) for r in strict.to_pylist()} == {("d1", "topic"), ("d3", "topic"), ("d4", "grade")}
    assert read_counts(strict)["unknown_label_set"] == 1 and read_counts(strict)["unknown_value"] == 1

    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    assert read_exports([empty]).num_rows == 0 and read_exports([]).schema.names == [n for n, _ in LAYERS["human_annotations"]]

    bad = tmp_path / "broken.json"
    bad.write_text('[{"id": 1, ', encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json.*JSON"):
        read_exports([f, bad])
    obj = tmp_path / "object.json"
    obj.write_text('{"tasks": []}', encoding="utf-8")
    with pytest.raises(ValueError, match="object.json: expected a JSON list"):
        read_exports([obj])
    jsonmin = tmp_path / "min.json"
    jsonmin.write_text(json.dumps([{"id": 1, "doc_id": "d1", "topic": "sport", "annotator": 1}]), encoding="utf-8")
    with pytest.raises(ValueError, match="min.json: .*JSON-MIN"):
        read_exports([jsonmin])


# ---------------------------------------------------------------------------------------------
# the real thing
# ---------------------------------------------------------------------------------------------

def _choices(topic: str, grade: str) -> list[dict]:
    return [{"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [topic]}},
            {"from_name": "grade", "to_name": "text", "type": "choices", "value": {"choices": [grade]}}]


def test_label_studio_round_trip(label_studio, tmp_path):  # noqa: F811
    ls = label_studio
    con = duckdb.connect()
    review = ReviewSettings(min_confidence=0.6, audit_fraction=1.0, max_tasks=100)
    paths = write_export(tmp_path / "review", _tasks_for(con, review), labeling_config(SETS))
    tasks = json.loads(paths["tasks"].read_text(encoding="utf-8"))
    config = paths["config"].read_text(encoding="utf-8")

    project = ls.api("POST", "/api/projects", {"title": "dataset_platform review", "label_config": config})
    pid = project["id"]
    assert ET.fromstring(project["label_config"]).find("Choices[@name='grade']") is not None
    imported = ls.api("POST", f"/api/projects/{pid}/import", tasks)
    assert imported["task_count"] == 6 and imported["prediction_count"] == 6

    listed = ls.api("GET", f"/api/tasks?project={pid}&page_size=100")["tasks"]
    task_of = {t["data"]["doc_id"]: t["id"] for t in listed}
    assert sorted(task_of) == [d[0] for d in DOCS]
    # our predictions were accepted as they were sent
    sent = {t["data"]["doc_id"]: t["predictions"][0] for t in tasks}
    for doc_id, tid in task_of.items():
        preds = ls.api("GET", f"/api/predictions?task={tid}")
        assert len(preds) == 1 and preds[0]["model_version"] == "dataset_platform"
        assert preds[0]["result"] == sent[doc_id]["result"] and preds[0]["score"] == pytest.approx(sent[doc_id]["score"])

    tokens = {"A": ls.token, "B": ls.invite("annotator-b@example.test", "another-secret-42")}
    ids = {p: str(ls.api("GET", "/api/current-user/whoami", token=t)["id"]) for p, t in tokens.items()}
    emails = {"A": ls.admin, "B": "annotator-b@example.test"}
    assert ids["A"] != ids["B"]

    def annotate(who, doc_id, result, **extra):
        return ls.api("POST", f"/api/tasks/{task_of[doc_id]}/annotations", {"result": result, **extra}, token=tokens[who])

    annotate("A", "d03", _choices(*A_FIRST_D03))
    for who, docs in PLAN.items():
        for doc_id, (topic, grade) in docs.items():
            annotate(who, doc_id, _choices(topic, grade))
    annotate("B", "d06", [], was_cancelled=True)  # B skips d06

    export = ls.api("GET", f"/api/projects/{pid}/export?exportType=JSON")
    assert isinstance(export, list) and len(export) == 6
    # predictions travelled with the tasks into Label Studio's export
    assert all(t["total_predictions"] == 1 for t in export)
    assert {a["prediction"]["model_version"] for t in export for a in t["annotations"] if a.get("prediction")} <= {"dataset_platform"}
    out = tmp_path / "inbox" / "annotations" / "project-export.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(export, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if os.environ.get("DATASET_PLATFORM_WRITE_LS_FIXTURE") == "1":  # refresh the stored export
        shutil.copyfile(out, FIXTURE)
    _check_plan(read_exports([out], SETS), ids)

    # an export snapshot with user details: annotators are their e-mail addresses
    snap = ls.api("POST", f"/api/projects/{pid}/exports/",
                  {"title": "with users", "serialization_options": {"annotations__completed_by": {"only_id": False}}})
    detail = ls.api("GET", f"/api/projects/{pid}/exports/{snap['id']}")
    assert detail["status"] == "completed"
    users = ls.api("GET", f"/api/projects/{pid}/exports/{snap['id']}/download?exportType=JSON")
    assert any(isinstance(a["completed_by"], dict) for t in users for a in t["annotations"])
    with_users = tmp_path / "inbox" / "annotations" / "with-users.json"
    with_users.write_text(json.dumps(users), encoding="utf-8")
    _check_plan(read_exports([with_users], SETS), emails)
