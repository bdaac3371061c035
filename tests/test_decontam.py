"""Benchmark decontamination on documents written here, into which items of the shared
benchmark sample (GSM8K, MMLU, CMMLU) are planted at run time with other casing, punctuation
and spacing; clean documents share words and short phrases with the items but no 13-gram."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import shared_corpus

from dataset_platform.config import BenchmarkSet, DecontaminationSettings
from dataset_platform.stages.decontaminate import (
    MIN_WHOLE_FIELD_TOKENS,
    NAME,
    BenchmarkError,
    load_benchmarks,
    match_batch,
    run_decontaminate,
    tokens,
)
from dataset_platform.storage import memory_connection, sql_str

EN_BEFORE = "Last week our study group met at the library to go over practice material before the exam."
EN_AFTER = "We argued about the answer for a while and then went out for noodles near the station."
ZH_BEFORE = "上周我们学习小组在图书馆复习，老师给大家出了一道练习题。"
ZH_AFTER = "大家讨论了很久，最后一起去车站附近吃了面条。"


def _items(name: str) -> list[dict]:
    path = shared_corpus("benchmark") / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def bench():
    """The three sets, and one item of each picked by a rule (not by copying its text here)."""
    gsm, mmlu, cmmlu = _items("gsm8k_test"), _items("mmlu_test_subset"), _items("cmmlu_test_subset")
    pick = {
        "gsm8k": gsm[0],
        "mmlu": next(i for i in mmlu if len(tokens(i["question"])) >= 25),
        "cmmlu": next(i for i in cmmlu if len(tokens(i["question"])) >= 40),
        # an MMLU choice long enough for n-grams whose question is not: found only through `choices`
        "mmlu_choice": next(i for i in mmlu if len(tokens(i["question"])) < MIN_WHOLE_FIELD_TOKENS
                            and any(len(tokens(c)) >= 13 for c in i["choices"])),
    }
    return shared_corpus("benchmark"), pick


def _sets(folder, fields=None, names=("gsm8k_test", "mmlu_test_subset", "cmmlu_test_subset")):
    short = {"gsm8k_test": "gsm8k", "mmlu_test_subset": "mmlu", "cmmlu_test_subset": "cmmlu"}
    return [BenchmarkSet(path=str(folder / f"{n}.jsonl"), name=short[n], fields=list((fields or {}).get(short[n], [])))
            for n in names]


def _shout(text: str) -> str:
    """Other casing, punctuation and spacing: upper case, punctuation runs become ' -- '."""
    return re.sub(r"[^\w\s]+", " -- ", text.upper()).replace(" ", "  ")


def _documents(pick: dict) -> list[tuple[str, str, str]]:
    """(id, lang, text): planted items first, then clean documents."""
    gsm_q, mmlu_q, cmmlu_q = pick["gsm8k"]["question"], pick["mmlu"]["question"], pick["cmmlu"]["question"]
    long_choice = next(c for c in pick["mmlu_choice"]["choices"] if len(tokens(c)) >= 13)
    gsm_words = tokens(gsm_q)
    zh_chars = tokens(cmmlu_q)
    return [
        ("d01", "en", f"{EN_BEFORE} {_shout(mmlu_q)} {EN_AFTER}"),
        ("d02", "zh", ZH_BEFORE + cmmlu_q.replace("，", ", ").replace("。", ". ") + ZH_AFTER),
        ("d03", "en", f"{EN_BEFORE}\n{gsm_q.replace(' ', chr(10))}\n{EN_AFTER}"),
        # the Chinese question quoted in an English page (lang says en): still found
        ("d04", "en", f"{EN_BEFORE} The exam quoted this passage: {cmmlu_q} {EN_AFTER}"),
        ("d05", "en", f"{EN_BEFORE} One option read: {long_choice} {EN_AFTER}"),
        ("d06", "en", f"{EN_BEFORE} {pick['gsm8k']['answer']} {EN_AFTER}"),
        # clean: 12 consecutive words of a question, 12 characters of a Chinese one, common words
        ("d07", "en", f"{EN_BEFORE} Someone wrote {' '.join(gsm_words[2:14])} on the board. {EN_AFTER}"),
        ("d08", "zh", ZH_BEFORE + "".join(zh_chars[3:15]) + "。" + ZH_AFTER),
        ("d09", "en", "The farmers' market opens every day; ducks, eggs and muffins sell for a few dollars each."),
        ("d10", "zh", "中国历史上有很多关于社会发展的讨论，我们今天只读了其中一小段。"),
        ("d11", "en", ""),
    ]


def _input(con, tmp_path, docs) -> str:
    path = tmp_path / "in.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    con.sql("CREATE TABLE _docs (id VARCHAR, source VARCHAR, url VARCHAR, title VARCHAR, text VARCHAR, "
            "lang VARCHAR, n_words BIGINT)")
    con.executemany("INSERT INTO _docs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(i, "s", f"https://example.org/{i}", f"T {i}", t, lang, len(t.split())) for i, lang, t in docs])
    con.sql(f"COPY (SELECT * FROM _docs ORDER BY id) TO {sql_str(path)} (FORMAT parquet)")
    con.sql("DROP TABLE _docs")
    return f"read_parquet({sql_str(path)})"


def _run(tmp_path, docs, settings, **kw):
    con = memory_connection()
    src = _input(con, tmp_path, docs)
    logs: list[str] = []
    res = run_decontaminate(con, src, settings, log=logs.append, **kw)
    rejected = {r[0]: r[1:] for r in con.sql("SELECT id, stage, rule, value FROM rejected ORDER BY id").fetchall()}
    return con, src, res, rejected, logs


def test_planted_items_are_removed_with_their_item(tmp_path, bench):
    folder, pick = bench
    docs = _documents(pick)
    con, _src, res, rejected, logs = _run(tmp_path, docs, DecontaminationSettings(benchmarks=_sets(folder)))
    g, m, c, mc = (pick[k]["id"] for k in ("gsm8k", "mmlu", "cmmlu", "mmlu_choice"))
    choice_i = next(i for i, x in enumerate(pick["mmlu_choice"]["choices"]) if len(tokens(x)) >= 13)
    assert {k: v[2] for k, v in rejected.items()} == {
        "d01": f"mmlu:{m}:question",
        "d02": f"cmmlu:{c}:question",
        "d03": f"gsm8k:{g}:question",
        "d04": f"cmmlu:{c}:question",
        "d05": f"mmlu:{mc}:choices[{choice_i}]",
        "d06": f"gsm8k:{g}:answer",
    }
    assert all(v[:2] == (NAME, "benchmark_overlap") for v in rejected.values())
    # kept: every input column in input order, the clean documents in id order
    kept = con.sql("SELECT * FROM kept").to_arrow_table()
    assert kept.column_names == ["id", "source", "url", "title", "text", "lang", "n_words"]
    assert kept.column("id").to_pylist() == ["d07", "d08", "d09", "d10", "d11"]
    assert kept.column("text").to_pylist() == [t for i, _l, t in docs if i >= "d07"]
    # accounting and counters
    assert res.balanced and (res.input_rows, res.kept_rows, res.rejected_rows) == (11, 5, 6)
    assert res.reasons == {"benchmark_overlap": 6}
    assert {k: res.extra[f"matched:{k}"] for k in ("gsm8k", "mmlu", "cmmlu")} == {"gsm8k": 2, "mmlu": 2, "cmmlu": 2}
    assert {k: res.extra[f"items:{k}"] for k in ("gsm8k", "mmlu", "cmmlu")} == {
        "gsm8k": len(_items("gsm8k_test")), "mmlu": len(_items("mmlu_test_subset")), "cmmlu": len(_items("cmmlu_test_subset"))}
    assert all(res.extra[f"ngrams:{k}"] > 1000 for k in ("gsm8k", "mmlu", "cmmlu"))
    assert res.extra["contaminated_items:gsm8k"] == 1 and res.extra["contaminated_items:cmmlu"] == 1
    assert res.extra["skipped_fields:mmlu"] > 0  # one-word choices such as a planet's name
    assert any("overlap a benchmark" in line for line in logs)


def test_field_restriction(tmp_path, bench):
    """With fields=[question] a planted choice or answer is no longer found; the questions are."""
    folder, pick = bench
    docs = _documents(pick)
    only_q = {"gsm8k": ["question"], "mmlu": ["question"], "cmmlu": ["question"]}
    _con, _src, res, rejected, _logs = _run(tmp_path, docs, DecontaminationSettings(benchmarks=_sets(folder, only_q)))
    assert sorted(rejected) == ["d01", "d02", "d03", "d04"]
    assert res.extra["items:mmlu"] == len(_items("mmlu_test_subset"))
    # answers only: the GSM8K question is no longer a match, its worked answer is
    idx = load_benchmarks(_sets(folder, {"gsm8k": ["answer"]}, names=("gsm8k_test",)), ngram=13, cjk_ngram=13)
    assert {src[2] for src in idx.sources} == {"answer"}
    texts = [t for i, _l, t in docs if i in ("d03", "d06")]
    hit_docs, chosen, _all = match_batch(texts, idx)
    assert hit_docs.tolist() == [1] and idx.value(int(chosen[0])) == f"gsm8k:{pick['gsm8k']['id']}:answer"


def test_default_fields_are_every_text_field(bench):
    folder, _pick = bench
    idx = load_benchmarks(_sets(folder, names=("mmlu_test_subset",)), ngram=13, cjk_ngram=13)
    fields = {re.sub(r"\[\d+\]$", "", src[2]) for src in idx.sources}
    assert fields == {"subject", "question", "choices", "answer"}  # every string field but id
    n_choices = sum(len(i["choices"]) for i in _items("mmlu_test_subset"))
    assert sum(src[2].startswith("choices[") for src in idx.sources) == n_choices
    st = idx.stats[0]
    assert st.fields == len(idx.sources) and st.whole_fields > 0 and st.skipped_fields > 0
    assert idx.hashes.dtype == np.uint64 and bool((np.diff(idx.hashes) > 0).all())  # sorted, distinct
    assert idx.lengths[0] == MIN_WHOLE_FIELD_TOKENS and idx.lengths[-1] == 13


def test_short_fields_whole_and_ids(tmp_path):
    """Own items: 8+ tokens match as a whole field, fewer are skipped and counted; items without
    an id are named <name>:<line>; the first item having an n-gram is the one recorded."""
    b = tmp_path / "quiz.jsonl"
    rows = [
        {"q": "which coloured lantern hangs above the old harbour gate"},  # 9 tokens: matched whole
        {"id": "x2", "q": "name the red lantern", "n": 3},  # 4 tokens: skipped
        {"id": "x3", "q": ["a lighthouse keeper counted every passing ship from the tower on the cliff each night",
                           "yes"]},
        {"id": "x4", "q": "a lighthouse keeper counted every passing ship from the tower on the cliff each night"},
        {"id": "x5", "q": "星期天早上我们一起去海边散步"},  # 14 CJK chars: a 13-gram
        {"id": "x6", "q": "春天来了花都开了"},  # 8 CJK chars: matched whole
    ]
    b.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    idx = load_benchmarks([BenchmarkSet(path=str(b))], ngram=13, cjk_ngram=13)
    st = idx.stats[0]
    assert (st.name, st.items, st.fields, st.whole_fields, st.skipped_fields, st.skipped_items) == ("quiz", 6, 7, 2, 2, 1)
    docs = [
        ("a1", "en", "At dusk: WHICH coloured lantern hangs above the old harbour-gate? Nobody knew."),
        ("a2", "en", "Which coloured lantern hangs above the harbour gate is a question for tomorrow."),
        ("a3", "en", "Name the red lantern, please."),
        ("a4", "en", "The story says a lighthouse keeper counted every passing ship from the tower on the cliff each night."),
        ("a5", "zh", "他说：星期天早上，我们一起去海边散步。"),
        ("a6", "ja", "手紙には「春天来了，花都开了」と書いてあった。"),
        ("a7", "zh", "星期天早上我们一起去海"),
    ]
    con = memory_connection()
    src = _input(con, tmp_path, docs)
    res = run_decontaminate(con, src, DecontaminationSettings(), index=idx, log=None)
    got = dict(con.sql("SELECT id, value FROM rejected ORDER BY id").fetchall())
    assert got == {"a1": "quiz:quiz:1:q", "a4": "quiz:x3:q[0]", "a5": "quiz:x5:q", "a6": "quiz:x6:q"}
    assert res.extra["contaminated_items:quiz"] == 4 and res.extra["skipped_items:quiz"] == 1


def test_ngram_size_is_configurable(tmp_path):
    b = tmp_path / "set.jsonl"
    b.write_text(json.dumps({"id": "s1", "text": "one two three four five six seven eight nine ten eleven twelve "
                                                 "thirteen fourteen fifteen"}) + "\n")
    doc = [("d1", "en", "we counted four five six seven eight nine ten and stopped")]  # 7 of its words
    for n, expect in ((13, 0), (7, 1)):
        settings = DecontaminationSettings(benchmarks=[BenchmarkSet(path=str(b))], ngram=n, cjk_ngram=n)
        _con, _src, res, _rej, _logs = _run(tmp_path / str(n), doc, settings)
        assert res.rejected_rows == expect
    idx = load_benchmarks([BenchmarkSet(path=str(b))], ngram=13, cjk_ngram=13)
    with pytest.raises(ValueError, match="13/13"):
        run_decontaminate(memory_connection(), "(SELECT 'a' AS id, 's' AS source, 'u' AS url, 't' AS title, "
                          "'x' AS text, 'en' AS lang)", DecontaminationSettings(ngram=7), index=idx, log=None)


def test_no_benchmarks_keeps_everything(tmp_path):
    docs = [("d1", "en", "Nothing to compare with."), ("d2", "zh", "没有评测集。")]
    con, _src, res, rejected, logs = _run(tmp_path, docs, DecontaminationSettings())
    assert (res.kept_rows, res.rejected_rows, rejected) == (2, 0, {})
    assert con.sql("SELECT id FROM kept").fetchall() == [("d1",), ("d2",)]
    assert any("no benchmarks configured" in line for line in logs)


def test_deterministic_and_batch_independent(tmp_path, bench):
    folder, pick = bench
    docs = _documents(pick)
    settings = DecontaminationSettings(benchmarks=_sets(folder))
    outs = []
    for k, batch in enumerate((2000, 3)):
        con, _src, _res, rejected, _logs = _run(tmp_path / str(k), docs, settings, batch_size=batch)
        outs.append((rejected, con.sql("SELECT id FROM kept").fetchall()))
    assert outs[0] == outs[1]


def test_bad_benchmark_files(tmp_path):
    missing = tmp_path / "absent.jsonl"
    with pytest.raises(BenchmarkError, match=r"absent.*not found"):
        load_benchmarks([BenchmarkSet(path=str(missing))], ngram=13, cjk_ngram=13)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "fine"}\n{"id": "2", "question": "broken\n')
    with pytest.raises(BenchmarkError, match=r"bad\.jsonl:2: not valid JSON"):
        load_benchmarks([BenchmarkSet(path=str(bad))], ngram=13, cjk_ngram=13)
    arr = tmp_path / "arr.jsonl"
    arr.write_text('["not", "an", "object"]\n')
    with pytest.raises(BenchmarkError, match=r"arr\.jsonl:1: an item must be a JSON object"):
        load_benchmarks([BenchmarkSet(path=str(arr))], ngram=13, cjk_ngram=13)
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"id": "1", "question": "fine", "score": 3}\n')
    with pytest.raises(BenchmarkError, match=r"ok\.jsonl has the field\(s\) 'prompt'"):
        load_benchmarks([BenchmarkSet(path=str(ok), fields=["question", "prompt"])], ngram=13, cjk_ngram=13)
    with pytest.raises(BenchmarkError, match=r"ok\.jsonl:1: field 'score' must be a string"):
        load_benchmarks([BenchmarkSet(path=str(ok), fields=["score"])], ngram=13, cjk_ngram=13)
    with pytest.raises(BenchmarkError, match="two benchmarks are named 'ok'"):
        load_benchmarks([BenchmarkSet(path=str(ok)), BenchmarkSet(path=str(ok))], ngram=13, cjk_ngram=13)
    # and the stage reports it before touching the documents
    con = memory_connection()
    with pytest.raises(BenchmarkError, match="absent"):
        run_decontaminate(con, _input(con, tmp_path, [("d1", "en", "x")]),
                          DecontaminationSettings(benchmarks=[BenchmarkSet(path=str(missing))]), log=None)


def test_missing_columns_are_named_and_optional_ones_filled():
    con = memory_connection()
    with pytest.raises(ValueError, match="needs the column.s. text"):
        run_decontaminate(con, "(SELECT 'a' AS id, 's' AS source, 'u' AS url)", DecontaminationSettings(), log=None)
    # a file of documents may carry only id and text: source, url, title are NULL, lang 'und'
    res = run_decontaminate(con, "(SELECT 'a' AS id, 'some text' AS text)", DecontaminationSettings(), log=None)
    assert res.kept_rows == 1
    assert con.sql("SELECT id, source, url, title, lang FROM kept").fetchall() == [("a", None, None, None, "und")]


def test_normalisation():
    # NFKC (full-width letters and digits, half-width katakana), lower case, punctuation dropped,
    # every CJK character a token, mixed text in order
    assert tokens("ＨＥＬＬＯ, World!! 1２3") == ["hello", "world", "123"]
    assert tokens("Tom’s “café” — naïve_x") == ["tom", "s", "café", "naïve", "x"]
    assert tokens("在2024年，ﾃﾞｰﾀ와 한국어 text") == ["在", "2024", "年", "デ", "ー", "タ", "와", "한", "국", "어", "text"]
    assert tokens("") == [] and tokens(None) == []


def test_lookup_agrees_with_isin():
    from dataset_platform.stages.decontaminate import BenchmarkIndex

    rng = np.random.default_rng(7)
    h = np.unique(rng.integers(0, np.iinfo(np.uint64).max, 50_000, dtype=np.uint64, endpoint=True))
    idx = BenchmarkIndex(13, 13, h, np.arange(h.size, dtype=np.int64), [], (13,))
    q = np.concatenate([rng.integers(0, np.iinfo(np.uint64).max, 200_000, dtype=np.uint64, endpoint=True),
                        h[::7], h[-1:], h[:1]])
    got = idx.lookup(q)
    assert np.array_equal(got >= 0, np.isin(q, h))
    assert np.array_equal(h[got[got >= 0]], q[got >= 0])
