"""Quality rules: every rule at and around its threshold, in English and Chinese (texts written for
these tests), annotate-only mode, per-language overrides, and the clean stage over real DuckDB."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import shared_corpus

from dataset_platform.config import CleanSettings, ConfigError, parse_config
from dataset_platform.contracts.rules import FAMILIES
from dataset_platform.stages.clean.score import RULES, resolve, score_batch
from dataset_platform.stages.clean.stage import run_clean
from dataset_platform.storage import memory_connection

NOUNS = ["river", "bridge", "market", "garden", "library", "harbour", "station", "orchard", "museum", "valley",
         "bakery", "tower", "meadow", "school", "theatre", "village", "ferry", "forest", "castle", "workshop"]
VERBS = ["repaired", "painted", "visited", "measured", "opened", "cleaned", "described", "photographed"]


MONTHS = ["January", "March", "April", "June", "August", "October", "November", "December"]
TEMPLATES = [
    "On day {i} the {a} near the {b} was {v} by volunteers of group {g}.",
    "Last {m} a small team {v} the old {a} beside the {b} again.",
    "Visitors said that the {a} looked better after it was {v} in {m}.",
    "Nobody expected the {b} to be {v} before the {a} reopened in {y}.",
    "In {y} the council and the {a} trust {v} plans for the {b}.",
    "A report from {m} said the {b} had been {v} with care and patience.",
    "Her grandfather {v} that {a} {g} times and still talks about the {b}.",
]


def sentence(i: int) -> str:
    """A distinct English sentence of 11-13 words with 'the' and one more stop word or two."""
    a, b = NOUNS[i % 20], NOUNS[(i * 7 + 3) % 20]
    return TEMPLATES[i % len(TEMPLATES)].format(i=i, a=a, b=b, v=VERBS[i % 8], g=i * 13 % 97, m=MONTHS[i % 8],
                                                y=1950 + i)


def article(n_sentences: int = 12, per_line: int = 2) -> str:
    sents = [sentence(i) for i in range(n_sentences)]
    return "\n".join(" ".join(sents[i : i + per_line]) for i in range(0, n_sentences, per_line))


ZH_SENTENCES = [
    "今天早上，城东的新图书馆正式向市民开放。", "馆内设有儿童阅读区、自习室和一个小型展览厅。",
    "很多家长带着孩子来这里借书，气氛十分热闹。", "馆长说，图书馆每个月都会举办一次读书分享会。",
    "附近的居民认为，这座图书馆让社区的生活更加丰富。", "工作人员还为老年读者准备了大字版的报纸和杂志。",
    "下午，一位作家在展览厅里和读者聊起了他的新小说。", "他说写作最难的部分，是每天坚持在书桌前坐下来。",
    "晚上七点以后，自习室里依然坐满了准备考试的学生。", "有人提议延长开放时间，馆方表示会认真研究这个建议。",
    "明年春天，图书馆还计划在屋顶开辟一个阅读花园。", "市里的另外两个区也在筹建类似的公共阅读空间。",
]


def zh_article(n: int = 12, per_line: int = 2) -> str:
    s = [ZH_SENTENCES[i % len(ZH_SENTENCES)] + ("" if i < len(ZH_SENTENCES) else f"第{i}条。") for i in range(n)]
    return "\n".join("".join(s[i : i + per_line]) for i in range(0, n, per_line))


def only(rule: str, lang: str | None = None, **kw) -> CleanSettings:
    """Settings where ``rule`` alone decides (for ``lang``: set as that
    language's override, which wins over the built-in per-language defaults)."""
    # the other rules annotate only: still measured as usual (FineWeb on the lines C4 keeps), never drop
    rules = {f: {"mode": "annotate"} for f in FAMILIES}
    if lang is not None:
        return CleanSettings(rules=rules, languages_overrides={lang: {rule: {"enabled": True, "mode": "drop", **kw}}})
    rules[rule] = {"enabled": True, "mode": "drop", **kw}
    return CleanSettings(rules=rules)


def score(text: str, settings: CleanSettings | None = None, lang: str = "en") -> dict:
    settings = settings or CleanSettings()
    b = pa.RecordBatch.from_pydict({"id": ["d"], "title": [None], "text": [text], "lang": [lang]})
    row = score_batch(b, settings).to_pylist()[0]
    row["quality"] = json.loads(row["quality"])
    return row


# ---------------------------------------------------------------- clean texts pass every rule


@pytest.mark.parametrize("lang, text", [("en", article(14)), ("zh", zh_article(12))])
def test_written_articles_pass_every_rule(lang, text):
    row = score(text, lang=lang)
    assert row["rule"] is None, (row["rule"], row["value"])
    assert set(row["quality"]) == set(RULES) and row["annotations"] == []


# ---------------------------------------------------------------- exact English thresholds


def test_word_count_at_threshold_en():
    words = [f"{NOUNS[i % 20]}{i}" for i in range(60)]
    s = only("gopher_quality.word_count")
    at = score(" ".join(words[:50]) + ".", s)
    below = score(" ".join(words[:49]) + ".", s)
    assert at["rule"] is None and at["quality"]["gopher_quality.word_count"] == 50  # "." is not a word
    assert (below["rule"], below["value"]) == ("gopher_quality.word_count", "49")


def test_stop_words_at_threshold_en():
    base = " ".join(f"{NOUNS[i % 20]}{i}" for i in range(60))
    s = only("gopher_quality.stop_words")
    assert score(base + " the", s)["rule"] == "gopher_quality.stop_words"
    assert score(base + " the", s)["value"] == "1"
    assert score(base + " The end", s)["rule"] == "gopher_quality.stop_words"  # case-sensitive, as Gopher
    assert score(base + " the and", s)["rule"] is None


def test_mean_word_length_en():
    s = only("gopher_quality.mean_word_length")
    assert score(" ".join(["ab"] * 30 + ["abcd"] * 30), s)["rule"] is None  # exactly 3.0
    r = score(" ".join(["ab"] * 31 + ["abcd"] * 29), s)
    assert (r["rule"], r["value"]) == ("gopher_quality.mean_word_length", "2.9667")
    long = score(" ".join(["extraordinarily"] * 5 + ["cat"] * 5), s)  # (15*5 + 3*5)/10 = 9.0
    assert long["rule"] is None
    assert score(" ".join(["extraordinarily"] * 6 + ["cat"] * 4), s)["rule"] == "gopher_quality.mean_word_length"


def test_hash_and_ellipsis_word_ratios_en():
    words = " ".join(f"{NOUNS[i % 20]}" for i in range(80))  # 80 words
    s = only("gopher_quality.hash_word_ratio")
    # each "#x" adds 2 words ("#", "x") and one hash
    at = score(words + " " + " ".join(["#x"] * 10), s)  # 10 / 100 = 0.1
    over = score(words + " " + " ".join(["#x"] * 11), s)  # 11 / 102
    assert at["rule"] is None and at["quality"]["gopher_quality.hash_word_ratio"] == 0.1
    assert (over["rule"], over["value"]) == ("gopher_quality.hash_word_ratio", "0.1078")
    s = only("gopher_quality.ellipsis_word_ratio")
    assert score(words + " " + " ".join(["x..."] * 10), s)["rule"] is None  # 10 / 100
    assert score(words + " " + " ".join(["x..."] * 11), s)["rule"] == "gopher_quality.ellipsis_word_ratio"


def test_bullet_and_ellipsis_lines_en():
    s = only("gopher_quality.bullet_lines_ratio")
    lines = [f"- item {NOUNS[i]} of the list" for i in range(9)]
    assert score("\n".join(lines + ["A closing line."]), s)["rule"] is None  # 9/10 = 0.9
    r = score("\n".join(lines + ["• one more item"] + ["A closing line."]), s)  # 10/11
    assert (r["rule"], r["value"]) == ("gopher_quality.bullet_lines_ratio", "0.9091")
    s = only("gopher_quality.ellipsis_lines_ratio")
    lines = [sentence(i) for i in range(7)] + [f"Read more about the {NOUNS[i]}…" for i in range(3)]
    assert score("\n".join(lines), s)["rule"] is None  # 3/10
    r = score("\n".join(lines + ["And the rest is in the next issue..."]), s)  # 4/11
    assert (r["rule"], r["value"]) == ("gopher_quality.ellipsis_lines_ratio", "0.3636")


def test_alpha_words_ratio_en():
    s = only("gopher_quality.alpha_words_ratio")
    assert score(" ".join(["word"] * 80 + ["2026"] * 20), s)["rule"] is None  # 0.8
    r = score(" ".join(["word"] * 79 + ["2026"] * 21), s)
    assert (r["rule"], r["value"]) == ("gopher_quality.alpha_words_ratio", "0.7900")


def test_duplicate_lines_and_paragraphs_en():
    s = only("gopher_repetition.dup_line_frac")
    lines = [sentence(i) for i in range(7)]
    assert score("\n".join(lines + lines[:3]), s)["rule"] is None  # 3/10 = 0.3
    r = score("\n".join(lines + lines[:4]), s)  # 4/11
    assert (r["rule"], r["value"]) == ("gopher_repetition.dup_line_frac", "0.3636")
    s = only("gopher_repetition.dup_para_frac")
    paras = [sentence(i) + " " + sentence(i + 50) for i in range(7)]
    assert score("\n\n".join(paras + paras[:3]), s)["rule"] is None
    assert score("\n\n".join(paras + paras[:4]), s)["rule"] == "gopher_repetition.dup_para_frac"
    # character fractions: one long repeated line among short ones
    s = only("gopher_repetition.dup_line_char_frac")
    r = score("\n".join(lines + lines[:2]), s)
    v = r["quality"]["gopher_repetition.dup_line_char_frac"]
    assert 0.2 < v < 0.3 and r["rule"] == "gopher_repetition.dup_line_char_frac"
    assert score("\n".join(lines + lines[:2]), only("gopher_repetition.dup_line_char_frac", max=v + 0.001))["rule"] is None


def test_top_and_duplicate_ngrams_en():
    text = article(10) + "\n" + " ".join(["green tea"] * 40)
    r = score(text, only("gopher_repetition.top_2gram_char_frac"))
    v = r["quality"]["gopher_repetition.top_2gram_char_frac"]
    assert r["rule"] == "gopher_repetition.top_2gram_char_frac" and v > 0.2
    assert score(text, only("gopher_repetition.top_2gram_char_frac", max=v + 0.00005))["rule"] is None
    # a repeated 12-word sentence: every duplicate n-gram rule sees it
    text = article(8) + "\n" + sentence(3) + " " + sentence(3)
    q = score(text)["quality"]
    assert all(q[f"gopher_repetition.dup_{n}gram_char_frac"] > 0 for n in range(5, 11))
    v = q["gopher_repetition.dup_5gram_char_frac"]
    # values are recorded rounded to 4 decimals: allow the rounding either side
    assert score(text, only("gopher_repetition.dup_5gram_char_frac", max=v + 0.00005))["rule"] is None
    r = score(text, only("gopher_repetition.dup_5gram_char_frac", max=v - 0.00006))
    assert (r["rule"], r["value"]) == ("gopher_repetition.dup_5gram_char_frac", f"{v:.4f}")


def test_c4_rules_en():
    s = only("c4.sentences")
    four = "\n".join(sentence(i) for i in range(4))
    r = score(four, s)
    assert (r["rule"], r["value"]) == ("c4.sentences", "4")
    assert score(four + "\n" + sentence(4), s)["rule"] is None
    # two sentences on one line count twice; lines without terminal punctuation, with fewer than
    # 3 words, with javascript or a policy phrase do not count
    assert score("\n".join([sentence(0) + " " + sentence(1)] + [sentence(i) for i in range(2, 5)]), s)["rule"] is None
    noisy = four + "\nPlease enable JavaScript to read the comments.\nRead our privacy policy today.\nShare this\nOk."
    assert score(noisy, s)["value"] == "4"
    s = only("c4.lorem_ipsum")
    r = score(article(8) + "\nLorem ipsum dolor sit amet, consectetur.", s)
    assert (r["rule"], r["value"]) == ("c4.lorem_ipsum", "1")
    assert score(article(8) + "\nLorem ipsum dolor sit amet", s)["rule"] is None  # line dropped first (no '.')
    s = only("c4.curly_bracket")
    assert score(article(8) + "\nThe set {a, b} has two members.", s)["rule"] == "c4.curly_bracket"
    assert score(article(8) + "\nfunction f() {", s)["rule"] is None  # C4 never keeps that line


def test_fineweb_rules_en():
    # FineWeb measures the lines C4 keeps (datatrove's chain order): switch C4 off to test it alone
    no_c4 = {"c4": {"enabled": False}}
    s = CleanSettings(rules={**{f: {"enabled": False} for f in FAMILIES}, **no_c4, "fineweb.short_line_ratio": {"enabled": True}})
    long_lines = [sentence(i) for i in range(33)]
    short = [f"Tag {NOUNS[i % 20]}" for i in range(67)]
    assert score("\n".join(long_lines + short), s)["rule"] is None  # 67/100 = 0.67
    r = score("\n".join(long_lines + short + ["Tag more"]), s)
    assert (r["rule"], r["value"]) == ("fineweb.short_line_ratio", "0.6733")
    s = CleanSettings(rules={**{f: {"enabled": False} for f in FAMILIES}, **no_c4, "fineweb.line_punct_ratio": {"enabled": True}})
    punct = [sentence(i) for i in range(12)]
    bare = [sentence(i)[:-1] for i in range(12, 100)]
    assert score("\n".join(punct + bare), s)["rule"] is None  # 12/100 = 0.12
    r = score("\n".join(punct[:11] + bare + ["No stop here"]), s)  # 11/100
    assert (r["rule"], r["value"]) == ("fineweb.line_punct_ratio", "0.1100")
    s = CleanSettings(rules={**{f: {"enabled": False} for f in FAMILIES}, **no_c4, "fineweb.newline_ratio": {"enabled": True}})
    r = score("\n".join(["one two three"] * 1 + ["a b"] * 9), s)  # 9 newlines / 21 words
    assert (r["rule"], r["value"]) == ("fineweb.newline_ratio", "0.4286")
    s = CleanSettings(rules={**{f: {"enabled": False} for f in FAMILIES}, "fineweb.char_dup_ratio": {"enabled": True}})
    lines = [sentence(i) for i in range(200)]
    r = score("\n".join(lines + lines[:3]), s)
    assert r["rule"] == "fineweb.char_dup_ratio" and r["quality"]["fineweb.char_dup_ratio"] > 0.01
    assert score("\n".join(lines + lines[:1]), s)["rule"] is None  # 1 line of ~70 chars in ~14k


# ---------------------------------------------------------------- Chinese


def test_zh_uses_jieba_words_and_cjk_punctuation():
    text = zh_article(12)
    q = score(text, lang="zh")["quality"]
    # jieba words: far fewer than characters, more than punctuation-separated clauses
    n_han = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    assert n_han / 2.5 < q["gopher_quality.word_count"] < n_han
    assert 1.0 <= q["gopher_quality.mean_word_length"] <= 4.0
    # 。！？ end sentences: 12 sentences on 6 lines
    assert q["c4.sentences"] == 12 and q["fineweb.line_punct_ratio"] == 1.0
    assert q["gopher_quality.stop_words"] >= 2  # 的, 了, 是, 在 ...
    # the same text measured with English rules would fail: no English stop words
    assert score(text, lang="en")["rule"] is not None


def threshold_text(lang: str) -> str:
    """A text (written for this test) on which every rule measures a non-zero value."""
    if lang == "zh":
        return (zh_article(24, per_line=1) + "\n" + ZH_SENTENCES[1] + "\n" + ZH_SENTENCES[0] * 3
                + "\n• 列表项目…\n# 标签 #新闻\nLorem ipsum 是排版时常用的占位文字。\n集合{甲，乙}里有两个元素。"
                + "\n\n" + ZH_SENTENCES[2] + "\n\n" + ZH_SENTENCES[2])
    return (article(24, per_line=1) + "\n" + sentence(3)
            + "\n• a bulleted item of the list\n- another item…\nRead the rest of the story...\n#news #river\n"
            "Lorem ipsum dolor sit amet, consectetur adipiscing.\nThe set {a, b} holds two letters.\nIt was fine."
            + "\n\n" + sentence(30) + " " + sentence(31) + "\n\n" + sentence(30) + " " + sentence(31))


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_at_and_around_its_threshold(rule, lang):
    """For each rule and language: threshold at the measured value -> kept; just past it -> dropped
    with the value (rule measured with that language's tokeniser and settings)."""
    text = threshold_text(lang)
    v = score(text, lang=lang)["quality"][rule]
    assert v, f"{rule} measures 0 on the {lang} text: the test would be trivial"
    r = RULES[rule]
    # quality values are rounded to 4 decimals: "at" allows the rounding, "past" goes beyond it
    at_eps, past_eps = (0, 1) if r.integer else (0.00005, 0.00006)
    bound = "min" if r.min is not None else "max"
    at = v - at_eps if bound == "min" else v + at_eps
    assert score(text, only(rule, lang, **{bound: at}), lang=lang)["rule"] is None
    past = v + past_eps if bound == "min" else v - past_eps
    got = score(text, only(rule, lang, **{bound: past}), lang=lang)
    assert got["rule"] == rule
    assert got["value"] == (str(int(v)) if r.integer else f"{v:.4f}")


def test_zh_short_lines_use_cjk_length():
    _, rules = resolve(CleanSettings(), "zh")
    profile, _ = resolve(CleanSettings(), "zh")
    assert profile.short_line_length == 12 and profile.cjk
    s = CleanSettings(rules={**{f: {"enabled": False} for f in FAMILIES}, "c4": {"enabled": False},
                             "fineweb.short_line_ratio": {"enabled": True}})
    # 11-character lines are short in Chinese (but would not be in English at 30)
    lines = ["我们今天去公园散步了。"] * 0 + [ZH_SENTENCES[i % 12][:11] for i in range(10)]
    assert score("\n".join(lines), s, lang="zh")["rule"] == "fineweb.short_line_ratio"
    assert score("\n".join(ZH_SENTENCES), s, lang="zh")["rule"] is None


# ---------------------------------------------------------------- modes, overrides, config


def test_annotate_only_keeps_and_records():
    short = " ".join(sentence(i) for i in range(2))  # ~24 words: fails word_count
    s = CleanSettings(rules={"gopher_quality.word_count": {"mode": "annotate"}, "c4": {"mode": "annotate"},
                             "gopher_repetition": {"mode": "annotate"}})
    r = score(short, s)
    assert r["rule"] is None
    assert "gopher_quality.word_count" in r["annotations"] and "c4.sentences" in r["annotations"]
    assert r["annotations"] == sorted(r["annotations"])
    assert r["quality"]["gopher_quality.word_count"] == r["n_words"] < 50


def test_language_override_and_precedence():
    text = " ".join(sentence(i) for i in range(3))  # ~36 words
    s = CleanSettings(rules={**{f: {"enabled": False} for f in FAMILIES}, "gopher_quality.word_count": {"enabled": True}},
                      languages_overrides={"de": {"gopher_quality.word_count": {"min": 30}}})
    assert score(text, s, lang="en")["rule"] == "gopher_quality.word_count"
    assert score(text, s, lang="de")["rule"] is None
    # built-in zh defaults win over global rules; the user's zh override wins over both
    s = CleanSettings(rules={"gopher_quality.mean_word_length": {"min": 3.5}},
                      languages_overrides={"zh": {"gopher_quality.mean_word_length": {"max": 2.0}}})
    _, zh = resolve(s, "zh")
    _, en = resolve(s, "en")
    assert (zh["gopher_quality.mean_word_length"].min, zh["gopher_quality.mean_word_length"].max) == (1.0, 2.0)
    assert en["gopher_quality.mean_word_length"].min == 3.5


def test_config_rejects_unknown_rules_and_bad_fields():
    base = {"sources": [{"name": "d", "kind": "jsonl", "paths": []}]}
    ok = parse_config({**base, "pipeline": {"clean": {"rules": {"c4": {"mode": "annotate"}},
                                                      "languages_overrides": {"zh": {"gopher_quality.stop_words": {"words": ["的"], "min": 1}}}}}})
    assert ok.pipeline.clean.rules["c4"].mode == "annotate"
    for clean, msg in [
        ({"rules": {"gopher.words": {"min": 1}}}, "is not a rule"),
        ({"rules": {"c4": {"min": 1}}}, "family takes only"),
        ({"rules": {"c4.lorem_ipsum": {"min": 1}}}, "has no min"),
        ({"rules": {"gopher_quality.word_count": {"mode": "warn"}}}, "drop"),
        ({"rules": {"fineweb.newline_ratio": {"words": ["x"]}}}, "stop_words only"),
        ({"languages_overrides": {"Chinese": {}}}, "language code"),
        ({"min_words": 50}, "unknown field"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_config({**base, "pipeline": {"clean": clean}})


def test_normalisation_nfkc_for_cjk_only_on_request():
    text = zh_article(6) + "\nＡＢＣ１２３，全角。"
    keep = {f: {"mode": "annotate"} for f in FAMILIES}  # rules only annotate: the text is kept
    plain = score(text, CleanSettings(rules=keep), lang="zh")
    folded = score(text, CleanSettings(nfkc_cjk=True, rules=keep), lang="zh")
    assert "ＡＢＣ１２３，全角。" in plain["text"] and "，" in plain["text"]  # kept as written by default
    assert folded["text"].split("\n")[-1] == "ABC123,全角。"  # NFKC: full-width Latin/digits/comma folded
    assert score("ＡＢＣ１２３ is full-width.", CleanSettings(nfkc_cjk=True, rules=keep))["text"].startswith("ＡＢＣ")  # CJK only


def test_rejected_documents_carry_no_text():
    row = score("Too short.")
    assert row["rule"] is not None and row["text"] is None and row["title"] is None


# ---------------------------------------------------------------- the stage, over DuckDB


def test_run_clean_records_every_rule_and_is_deterministic():
    texts = {"a": article(14), "b": "Too short to keep.", "c": "\n".join([sentence(1)] * 20),
             "d": zh_article(12), "e": article(14) + "\nLorem ipsum dolor sit amet, again."}
    langs = {"a": "en", "b": "en", "c": "en", "d": "zh", "e": "en"}
    outs = []
    for _ in range(2):
        con = memory_connection()
        con.register("docs", pa.table({"id": list(texts), "text": list(texts.values()), "lang": [langs[k] for k in texts]}))
        res = run_clean(con, "docs", CleanSettings())
        assert res.balanced
        kept = con.sql("SELECT id, n_words, quality, annotations FROM kept ORDER BY id").fetchall()
        rej = con.sql("SELECT id, stage, rule, value FROM rejected ORDER BY id").fetchall()
        outs.append((kept, rej))
    assert outs[0] == outs[1]
    kept, rej = outs[0]
    assert [k[0] for k in kept] == ["a", "d"]
    assert {r[0]: r[2] for r in rej} == {"b": "gopher_repetition.top_2gram_char_frac", "c": "gopher_repetition.dup_line_frac",
                                         "e": "c4.lorem_ipsum"}
    q = json.loads(kept[0][2])
    assert list(q) == sorted(q) and q["gopher_quality.word_count"] == kept[0][1]


def test_run_clean_language_filter_comes_first():
    con = memory_connection()
    con.register("docs", pa.table({"id": ["x", "y"], "text": [article(14), "short"], "lang": ["de", "en"]}))
    run_clean(con, "docs", CleanSettings(languages=["en"]))
    assert con.sql("SELECT id, rule, value FROM rejected ORDER BY id").fetchall() == [
        ("x", "language_not_wanted", "de"), ("y", "gopher_quality.word_count", "1")]  # one word: no 2-gram


def test_run_clean_in_worker_processes_matches_in_process():
    texts = [article(10 + i % 5) if i % 3 else "\n".join([sentence(i)] * 9) for i in range(60)]
    tables = []
    for workers in (1, 2):
        con = memory_connection()
        con.register("docs", pa.table({"id": [f"{i:03d}" for i in range(60)], "text": texts, "lang": ["en"] * 60}))
        run_clean(con, "docs", CleanSettings(), batch_size=16, workers=workers)
        tables.append((con.sql("SELECT * FROM kept ORDER BY id").fetchall(), con.sql("SELECT * FROM rejected ORDER BY id").fetchall()))
    assert tables[0] == tables[1] and len(tables[0][1]) == 20


# ---------------------------------------------------------------- real text (shared corpus)


def test_real_news_articles_are_mostly_kept():
    path = shared_corpus("neardup/bbc_news") / "docs.jsonl"
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    b = pa.RecordBatch.from_pydict({"id": [str(i) for i in range(len(texts))], "title": [None] * len(texts),
                                    "text": texts, "lang": ["en"] * len(texts)})
    out = score_batch(b, CleanSettings()).to_pylist()
    kept = sum(r["rule"] is None for r in out)
    assert kept / len(out) >= 0.9, [r["rule"] for r in out if r["rule"]][:10]


def test_real_chinese_pages_are_mostly_kept_with_zh_settings():
    path = shared_corpus("webextract") / "groundtruth.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    texts = [r["text"] for r in rows if r.get("lang") == "zh" and r.get("text") and len(r["text"]) > 300]
    assert len(texts) >= 20
    b = pa.RecordBatch.from_pydict({"id": [str(i) for i in range(len(texts))], "title": [None] * len(texts),
                                    "text": texts, "lang": ["zh"] * len(texts)})
    zh = score_batch(b, CleanSettings()).to_pylist()
    kept = sum(r["rule"] is None for r in zh)
    assert kept / len(zh) >= 0.6, [(r["rule"], r["value"]) for r in zh if r["rule"]]


def test_zh_words_equal_jieba_on_real_pages_and_mixed_scripts():
    """The clean stage's Chinese words come from jieba-rs (rjieba), 12x faster than jieba: they must
    stay jieba 0.42.1's accurate-mode words without HMM, line by line, on the shared corpus's Chinese
    pages and on random strings mixing Han, Latin, digits, CJK and ASCII punctuation, emoji, kana,
    Hangul and rare-plane ideographs (the block splitting is where ports tend to differ)."""
    import random

    import jieba

    from dataset_platform.stages.clean.text import normalise_text, tokenizer

    path = shared_corpus("webextract") / "groundtruth.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    lines = [ln for r in rows if r.get("lang") == "zh" and r.get("text")
             for ln in normalise_text(r["text"]).split("\n") if ln]
    assert len(lines) >= 200
    rng = random.Random(7)
    pool = (list("中文维基百科是一个自由的北京大学生活动") + list("abcXYZ0123456789+#&._%-")
            + list(" 　，。！？、“”（）《》…—😀𠀀é日本ｶﾅ한국\u00a0'\"/:;@\u200d"))
    lines += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) for _ in range(20000)]
    ref = jieba.Tokenizer()
    zh = tokenizer("zh")
    differ = [ln for ln in lines if zh(ln) != [w for w in ref.lcut(ln, HMM=False) if not w.isspace()]]
    assert not differ, differ[:5]


def test_normalise_array_equals_normalise_text():
    """The set-based normaliser (RE2 + ftfy only where it can act) gives what the per-text one does."""
    from dataset_platform.stages.clean.text import _badness_re2, normalise_array, normalise_text

    assert _badness_re2() is not None  # ftfy's mojibake test converted to RE2 and checked against ftfy
    texts = [article(6), zh_article(4), "cafÃ© au lait â€” naÃ¯ve", "Tom &amp; Jerry\x85next", "a\x07b\u200b c",
             "  lead\u3000space \r\n\r\n\r\n\r\n tail  ", "ＡＢＣ１２３，全角。", "", "“curly” quotes ﬁne",
             "x\x1b[31mred\x1b[0m", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€", "l\u2028m\u2029n\x0bo\x0cp",
             "one\ttwo three\u00a0 four  five \u3000six\x1c seven"]
    texts += [t.encode("utf-8").decode("latin-1") for t in texts[:3]]
    nfkc = [i % 3 == 0 for i in range(len(texts))]
    got = normalise_array(texts + [None], nfkc + [False]).to_pylist()
    assert got == [normalise_text(t, nfkc=f) for t, f in zip(texts, nfkc)] + [""]
    assert got[2] == "café au lait — naïve" and got[3] == "Tom & Jerry...next"  # what ftfy makes of the C1 character 0x85


def test_ftfy_by_line_equals_ftfy_on_whole_texts():
    """ftfy runs only on the lines it can change: the same texts (up to NFC, which follows) as ftfy
    over whole texts, also where ftfy's "stop unescaping after a '<'" state matters, on the shared
    corpus's pages and on random mixes of entities, mojibake, controls, tags and newlines."""
    import random
    import unicodedata

    import ftfy

    from dataset_platform.stages.clean.text import _ftfy_by_line, _ftfy_config

    cfg = _ftfy_config()
    rows = [json.loads(line) for line in (shared_corpus("webextract") / "groundtruth.jsonl").open(encoding="utf-8")]
    texts = [r["text"] for r in rows if r.get("text")]
    texts += [t.replace(". ", ". &amp; ", 3).replace("\n", " &#8217;\n", 2) for t in texts]
    rng = random.Random(3)
    pieces = ["caf\u00c3\u00a9", "&amp;", "&lt;b&gt;", "<b>", "&#8217;", "\x1b[31m", "\x85", "\u0080", "plain", "“q”",
              "\n", "\n\n", " ", "naÃ¯ve", "Ã©tÃ© Â£5", "\u0301", "&nbsp;", "<", "\r\n", "\x00", "\ufeff", ""]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    texts += ["&amp;<\n&amp;", "&amp;\n<&amp;\n&amp;", "x" * 1_000_001 + "&amp;\n&amp;"]  # the state; a segment cut by ftfy
    want = [unicodedata.normalize("NFC", ftfy.fix_text(t, cfg)) for t in texts]
    got = [unicodedata.normalize("NFC", t) for t in _ftfy_by_line(pa.array(texts, pa.string())).to_pylist()]
    assert got == want
    assert want[-3:-1] == ["&amp;<\n&amp;", "&\n<&amp;\n&amp;"]  # the cases mean what they say


@pytest.mark.parametrize("lang", ["en", "ja", "zh"])
def test_tokenize_lines_equals_the_tokeniser_line_by_line(lang):
    """Words by distinct space-separated chunk (gathered with numpy) are the tokeniser's words line
    by line, with the same ids; the chunk count is RE2's count of non-space runs. On the shared
    corpus's pages (normalised) and on random lines of letters, digits, URLs, e-mail addresses,
    initials, titles, clitics, units, dots and dashes; lines with other whitespace than single
    spaces take the line-by-line path and give the same."""
    import random

    import numpy as np
    import pyarrow.compute as pc

    from dataset_platform.stages.clean.text import normalise_array, tokenize_lines, tokenizer

    rows = [json.loads(line) for line in (shared_corpus("webextract") / "groundtruth.jsonl").open(encoding="utf-8")]
    texts = normalise_array([r["text"] for r in rows if r.get("text")]).to_pylist()
    lines = [ln for t in texts for ln in t.split("\n")]
    rng = random.Random(5)
    pieces = ["word", "Word", "U.S.", "e.g.", "Mr.", "Dr", "don't", "it's", "we’re", "O'Neill", "1,000", "3.5",
              "10:30", "600m", "5km", "https://example.test/a?b=1.", "a.b@example.test", "...", "--", "-", ",", ".",
              "!", "(", ")", "“", "”", "café", "naïve", "日本語", "カタカナ", "中文", "²", "½", "_", "#tag", "@who", "+1",
              "x-y", "end.", "", " ", " ", "  "]
    lines += ["".join(rng.choice(pieces) + rng.choice(["", " ", " "]) for _ in range(rng.randint(0, 15)))
              for _ in range(4000)]
    tok = tokenizer(lang)
    for sample in (lines, lines + ["tab\there", "nbsp\u00a0there"]):  # the second: line by line
        arr = pa.array(sample, pa.string())
        per_line = [tok(ln) if ln else [] for ln in sample]
        flat = [w for ws in per_line for w in ws]
        vocab = list(dict.fromkeys(flat))
        index = {w: i for i, w in enumerate(vocab)}
        ntok, ids, got_vocab, chunks = tokenize_lines(arr, lang)
        assert ntok.tolist() == [len(ws) for ws in per_line]
        assert got_vocab == vocab and ids.tolist() == [index[w] for w in flat]
        if chunks is not None:
            assert lang != "zh" and sample is lines
            assert np.array_equal(chunks, pc.count_substring_regex(arr, r"\S+").to_numpy(zero_copy_only=False))
        else:
            assert lang == "zh" or sample is not lines


def test_punctuation_sets_match_datatrove():
    """Our written-out punctuation sets are datatrove's (its FineWeb / Gopher filters define them)."""
    text_mod = pytest.importorskip("datatrove.utils.text", reason="datatrove is a bench-only dependency (pip install .[bench])")
    import sys

    measure_mod = sys.modules["dataset_platform.stages.clean.measure"]
    assert measure_mod.TERMINAL_PUNCTUATION == frozenset(text_mod.TERMINAL_PUNCTUATION)
    assert measure_mod.PUNCT_SET == frozenset(text_mod.PUNCTUATION_SET)
    assert "。" in measure_mod.TERMINAL_PUNCTUATION and "！" in measure_mod.TERMINAL_PUNCTUATION
