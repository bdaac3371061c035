"""The labelling stage (stages/label/stage.py) on crafted documents, with real DuckDB and scikit-learn.

The gold set below is written for these tests: short English and Chinese documents on three
topics (sport, cooking, weather), one label set covering both languages.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from dataset_platform.config import LabelRule, LabelSet, LabelSettings
from dataset_platform.contracts import schema
from dataset_platform.stages.label.stage import (
    DETAIL_COLUMNS,
    GoldError,
    read_gold,
    run_label,
    tokens,
)
from dataset_platform.storage import memory_connection

TOPICS = ["sport", "cooking", "weather"]

EN = {
    "sport": [
        "The striker scored twice and the home team won the league match.",
        "Our goalkeeper saved a penalty in the last minute of the game.",
        "The coach picked a young midfielder for the cup final on Saturday.",
        "Fans cheered as the runners crossed the finish line of the marathon.",
        "The tennis champion lost the first set but won the tournament.",
        "After the injury the defender returned to training with the squad.",
        "The referee showed a red card and the players argued on the pitch.",
    ],
    "cooking": [
        "Chop the onions, fry them in butter and add the garlic to the pan.",
        "Bake the bread in a hot oven until the crust turns golden brown.",
        "Stir the sauce slowly and season it with salt, pepper and fresh basil.",
        "This recipe needs flour, two eggs, sugar and a cup of warm milk.",
        "Simmer the soup for an hour, then blend the vegetables until smooth.",
        "The chef roasted the chicken with lemon, thyme and olive oil.",
        "Whisk the cream and spread it over the cake once it has cooled.",
    ],
    "weather": [
        "Heavy rain and strong winds are expected across the coast tonight.",
        "The forecast says sunny skies with temperatures rising to thirty degrees.",
        "A cold front will bring snow and frost to the northern hills.",
        "Thunderstorms may cause flooding in low valleys later this week.",
        "Fog will clear by noon, leaving a mild and cloudy afternoon.",
        "Meteorologists warned of a heatwave and very dry air over the weekend.",
        "Light showers and a chilly breeze will follow the storm on Monday.",
    ],
}
ZH = {
    "sport": [
        "主队前锋在比赛最后时刻进球，球队赢得了联赛冠军。",
        "守门员扑出点球，球迷在看台上欢呼。",
        "教练为杯赛决赛挑选了年轻的中场球员。",
        "马拉松选手冲过终点线，打破了赛会纪录。",
        "网球冠军先输一盘，最终赢得了锦标赛。",
        "受伤的后卫已经恢复训练，将参加下一场比赛。",
        "裁判出示红牌，球员们在球场上争论起来。",
    ],
    "cooking": [
        "把洋葱切碎，用油炒香后加入蒜末和酱油。",
        "面包放进烤箱烤到外皮金黄就可以出炉了。",
        "慢慢搅拌酱汁，再加入盐、胡椒和新鲜罗勒调味。",
        "这道菜谱需要面粉、两个鸡蛋、白糖和一杯温牛奶。",
        "汤要用小火炖一个小时，然后把蔬菜打成泥。",
        "厨师用柠檬和橄榄油烤了一只鸡，味道鲜美。",
        "把奶油打发后抹在已经放凉的蛋糕上。",
    ],
    "weather": [
        "今晚沿海地区将有大雨和强风，请注意出行安全。",
        "天气预报说明天晴朗，气温将升到三十度。",
        "冷空气南下，北方山区将出现降雪和霜冻。",
        "本周后期可能出现雷暴，低洼地区要防范洪水。",
        "大雾中午前消散，下午多云，气温温和。",
        "气象台发布高温预警，周末空气十分干燥。",
        "暴雨过后周一将有小阵雨，风力较大，天气转凉。",
    ],
}
#: unseen documents, per language: (text, topic)
UNSEEN_EN = [
    ("The team celebrated after the final whistle; the striker was named player of the match.", "sport"),
    ("Fry the garlic in olive oil, then add the onions and season the sauce with salt.", "cooking"),
    ("Strong winds and heavy rain will reach the coast, followed by snow on the hills.", "weather"),
]
UNSEEN_ZH = [
    ("球员们在训练中备战决赛，教练对球队很有信心。", "sport"),
    ("先把鸡蛋和面粉搅拌均匀，再放进烤箱烤二十分钟。", "cooking"),
    ("气象台预报明天有雷暴和大雨，气温下降。", "weather"),
]


def gold_rows() -> list[dict]:
    """42 English + 42 Chinese gold documents: every pair of neighbouring sentences of a topic
    (7 per topic and language), and every sentence alone (7 more)."""
    rows = []
    for lang, pools in (("en", EN), ("zh", ZH)):
        sep = " " if lang == "en" else ""
        for topic, pool in pools.items():
            for i, s in enumerate(pool):
                rows.append({"id": f"g-{lang}-{topic}-{i}a", "text": s + sep + pool[(i + 1) % len(pool)], "topic": topic})
                rows.append({"id": f"g-{lang}-{topic}-{i}b", "text": s, "topic": topic})
    return rows


def gold_table(rows=None) -> pa.Table:
    rows = gold_rows() if rows is None else rows
    return pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows],
                     "topic": [r["topic"] for r in rows]})


def docs(con, rows: list[dict], name: str = "docs") -> str:
    """Register documents (id, url, title, text; the other contract columns filled) as a table."""
    n = len(rows)
    con.register(f"{name}_arrow", pa.table({
        "id": [r["id"] for r in rows], "source": ["test"] * n,
        "url": [r.get("url", f"https://site.test/{r['id']}") for r in rows],
        "title": [r.get("title") for r in rows], "text": [r["text"] for r in rows],
        "lang": [r.get("lang", "en") for r in rows], "n_chars": [len(r["text"]) for r in rows],
        "n_words": [len(r["text"].split()) for r in rows], "content_hash": [f"h{r['id']}" for r in rows],
        "quality": ["{}"] * n,  # a further column: ignored
    }))
    con.sql(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
    return name


def topic_set(rules=(), model=False, default="weather", values=TOPICS, name="topic") -> LabelSet:
    return LabelSet(name=name, values=list(values), default=default, rules=list(rules), model=model)


def labels(con, set_name: str = "topic") -> dict[str, tuple]:
    """id -> (value, source, confidence) from kept."""
    q = f'SELECT id, "{set_name}", "{set_name}_source", "{set_name}_confidence" FROM kept ORDER BY id'
    return {r[0]: r[1:] for r in con.sql(q).fetchall()}


def details(con) -> list[dict]:
    rel = con.sql("SELECT * FROM label_details ORDER BY id, label_set")
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


# ------------------------------------------------------------------ rules


def test_keyword_rules_count_occurrences_case_insensitively_in_both_languages():
    con = memory_connection()
    src = docs(con, [
        {"id": "a", "title": "GOAL!", "text": "A goal, another Goal and a recipe."},  # sport 3 (title too), cooking 1
        {"id": "b", "text": "球队进球了。厨师做了一道菜，菜很好吃。"},  # sport 1 (进球), cooking 3 (厨师 + 菜 x2)
        {"id": "c", "text": "Nothing matches here."},
    ])
    rules = [LabelRule(value="sport", keywords=["goal", "进球"]),
             LabelRule(value="cooking", keywords=["recipe", "厨师"]),
             LabelRule(value="cooking", keywords=["菜"])]
    res = run_label(con, src, LabelSettings(sets=[topic_set(rules)]), log=None)
    got = labels(con)
    assert got["a"] == ("sport", "rule", 0.75)
    assert got["b"] == ("cooking", "rule", 0.75)
    assert got["c"] == ("weather", "default", 0.0)
    assert res.balanced and res.kept_rows == 3 and res.rejected_rows == 0
    assert res.extra["topic:sport"] == 1 and res.extra["topic:cooking"] == 1 and res.extra["topic:weather"] == 1
    assert res.extra["topic_source:rule"] == 2 and res.extra["topic_source:default"] == 1
    assert res.extra["topic_model_train_rows"] == 0


def test_regex_url_and_domain_rules():
    con = memory_connection()
    src = docs(con, [
        # regex: two matches (case-insensitive) for weather; url rule: one vote for sport
        {"id": "r", "url": "https://x.test/sport/1", "text": "RAIN today, more rainfall tomorrow."},
        # domains: subdomain of the listed domain (user info and port ignored, host case folded)
        {"id": "d", "url": "http://user@News.Kitchen.Test:8080/a", "text": "no keywords"},
        # a host that merely ends with the same letters is not a subdomain
        {"id": "n", "url": "http://notkitchen.test/a", "text": "no keywords"},
        {"id": "e", "url": "https://kitchen.test./b", "text": "no keywords"},  # exact host, trailing dot
    ])
    rules = [LabelRule(value="weather", regex=r"\brain\w*"), LabelRule(value="sport", url=r"/sport/"),
             LabelRule(value="cooking", domains=["kitchen.test"]), LabelRule(value="weather", regex=r"z*")]
    run_label(con, src, LabelSettings(sets=[topic_set(rules, default="sport")]), log=None)
    got = labels(con)
    assert got["r"] == ("weather", "rule", pytest.approx(2 / 3, abs=1e-6))  # the empty-matching regex adds nothing
    assert got["d"] == ("cooking", "rule", 1.0)
    assert got["n"] == ("sport", "default", 0.0)
    assert got["e"] == ("cooking", "rule", 1.0)


def test_vote_ties_follow_the_order_of_values():
    con = memory_connection()
    src = docs(con, [{"id": "t", "text": "snow and soup"}])
    rules = [LabelRule(value="weather", keywords=["snow"]), LabelRule(value="cooking", keywords=["soup"])]
    run_label(con, src, LabelSettings(sets=[topic_set(rules, values=["sport", "weather", "cooking"])]), log=None)
    assert labels(con)["t"] == ("weather", "rule", 0.5)
    run_label(con, src, LabelSettings(sets=[topic_set(rules, values=["cooking", "weather", "sport"])]), log=None)
    assert labels(con)["t"] == ("cooking", "rule", 0.5)


def test_kept_follows_the_contract_and_rejects_nothing():
    con = memory_connection()
    src = docs(con, [{"id": f"d{i}", "text": "plain text"} for i in (3, 1, 2)])
    sets = [topic_set(), topic_set(name="quality_grade", values=["low", "high"], default="low")]
    res = run_label(con, src, LabelSettings(sets=sets), log=None)
    rel = con.sql("SELECT * FROM kept")
    assert rel.columns == schema.columns("labelled_documents", ["topic", "quality_grade"])
    assert [r[0] for r in rel.fetchall()] == ["d1", "d2", "d3"]
    assert con.sql("SELECT count(*) FROM rejected").fetchall() == [(0,)]
    assert con.sql("SELECT DISTINCT quality_grade, quality_grade_source, quality_grade_confidence FROM kept"
                   ).fetchall() == [("low", "default", 0.0)]
    assert res.extra["quality_grade:low"] == 3 and res.extra["quality_grade:high"] == 0


# ------------------------------------------------------------------ the classifier


def test_tokens_mix_words_and_cjk_characters():
    assert tokens("Goal! 进球了 x 2024") == ["goal", "进", "球", "了", "进球", "球了"]
    assert tokens("进球", cjk="bigram") == ["进球"]


def test_gold_trained_model_labels_unseen_english_and_chinese_documents():
    con = memory_connection()
    unseen = UNSEEN_EN + UNSEEN_ZH
    src = docs(con, [{"id": f"u{i}", "text": t, "lang": "en" if i < 3 else "zh"} for i, (t, _) in enumerate(unseen)]
               + [{"id": "x", "text": "1234 5678 !!"}])  # no token the model knows: no model value
    messages: list[str] = []
    res = run_label(con, src, LabelSettings(sets=[topic_set(model=True, default="sport")]), gold=gold_table(),
                    log=messages.append)
    got = labels(con)
    for i, (_, topic) in enumerate(unseen):
        value, source, conf = got[f"u{i}"]
        assert (value, source) == (topic, "model"), (unseen[i], got[f"u{i}"])
        assert 1 / 3 < conf <= 1
    assert got["x"] == ("sport", "default", 0.0)
    assert res.extra["topic_model_train_rows"] == 84 and res.extra["topic_source:model"] == 6
    assert any("classifier trained on 84 gold rows" in m for m in messages)


def test_no_model_without_two_classes_of_two_examples():
    con = memory_connection()
    src = docs(con, [{"id": "a", "text": "The striker scored a goal."}])
    rows = [r for r in gold_rows() if r["topic"] == "sport"] + [gold_rows()[-1]]  # sport + one weather example
    messages: list[str] = []
    res = run_label(con, src, LabelSettings(sets=[topic_set(model=True)]), gold=gold_table(rows), log=messages.append)
    assert labels(con)["a"] == ("weather", "default", 0.0)
    assert res.extra["topic_model_train_rows"] == 0
    assert any("no classifier" in m and "weather=1" in m for m in messages)


def test_rules_and_model_combine_by_agreement_then_confidence():
    con = memory_connection()
    texts = [t for pools in (EN, ZH) for pool in pools.values() for t in pool] + [t for t, _ in UNSEEN_EN + UNSEEN_ZH]
    src = docs(con, [{"id": f"c{i:03d}", "text": t} for i, t in enumerate(texts)])
    # rules that sometimes agree with the model and sometimes not (oil/wind/球 appear across topics)
    rules = [LabelRule(value="cooking", keywords=["oil", "油"]), LabelRule(value="weather", keywords=["wind", "风"]),
             LabelRule(value="sport", keywords=["球", "the"])]
    run_label(con, src, LabelSettings(sets=[topic_set(rules, model=True)]), gold=gold_table(), log=None)
    seen = set()
    for d in details(con):
        rv, rc, mv, mc = d["rule_value"], d["rule_confidence"], d["model_value"], d["model_confidence"]
        if rv is not None and rv == mv:
            want = (rv, "rule+model", max(rc, mc))
        elif rv is not None and mv is not None:
            want = (rv, "rule", rc) if rc >= mc else (mv, "model", mc)
        elif rv is not None:
            want = (rv, "rule", rc)
        elif mv is not None:
            want = (mv, "model", mc)
        else:
            want = ("weather", "default", 0.0)
        assert (d["value"], d["source"], d["confidence"]) == want, d
        seen.add(want[1] if want[1] != "rule" or mv is None else "rule-over-model")
    assert {"rule+model", "rule-over-model", "model"} <= seen  # the interesting cases all occurred


def test_human_labels_override_and_train_the_model():
    con = memory_connection()
    rows = [{"id": f"h{i:02d}", "text": t} for i, t in enumerate(t for pool in EN.values() for t in pool)]
    src = docs(con, rows + [{"id": "z", "text": "The striker scored a goal in the final."}])
    truth = {r["id"]: topic for r, topic in zip(rows, [t for t in EN for _ in EN[t]])}
    ids = sorted(truth)
    human = pa.table({
        "id": ids + ["h00", "h01"],
        "label_set": ["topic"] * len(ids) + ["topic", "topic"],
        "value": [truth[i] for i in ids] + ["cooking", "nonsense"],
        "confidence": [0.9] * len(ids) + [1.0, 1.0],
        "resolved": [True] * len(ids) + [False, True],  # an unresolved label and an unknown value: ignored
    })
    rules = [LabelRule(value="weather", keywords=["striker"])]
    res = run_label(con, src, LabelSettings(sets=[topic_set(rules, model=True)]), human=human, log=None)
    got = labels(con)
    for i in ids:
        assert got[i] == (truth[i], "human", 0.9)
    assert got["z"][0] in {"weather", "sport"} and got["z"][1] in {"rule", "model"}
    assert res.extra["topic_model_train_rows"] == len(ids)  # no gold file: the people's labels trained it
    d = {r["id"]: r for r in details(con)}
    # h00 mentions a striker: the rule says weather, the person says sport, and the person wins
    assert (d["h00"]["human_value"], d["h00"]["rule_value"], d["h00"]["value"]) == ("sport", "weather", "sport")


# ------------------------------------------------------------------ details, determinism, gold files


def test_label_details_has_one_row_per_document_and_set():
    con = memory_connection()
    src = docs(con, [{"id": "b", "text": "Rain and wind."}, {"id": "a", "text": "A goal."}])
    sets = [topic_set([LabelRule(value="weather", keywords=["rain", "wind"]), LabelRule(value="sport", keywords=["goal"])]),
            topic_set(name="grade", values=["low", "high"], default="low")]
    run_label(con, src, LabelSettings(sets=sets), log=None)
    rel = con.sql("SELECT * FROM label_details")
    assert tuple(rel.columns) == DETAIL_COLUMNS
    assert rel.fetchall() == [
        ("a", "grade", "low", "default", 0.0, None, None, None, None, None),
        ("a", "topic", "sport", "rule", 1.0, "sport", 1.0, None, None, None),
        ("b", "grade", "low", "default", 0.0, None, None, None, None, None),
        ("b", "topic", "weather", "rule", 1.0, "weather", 1.0, None, None, None),
    ]


def test_two_runs_are_identical_and_batching_does_not_matter():
    texts = [t for t, _ in UNSEEN_EN + UNSEEN_ZH] + [t for pool in EN.values() for t in pool]
    outputs = []
    for batch_size in (2000, 2000, 4):
        con = memory_connection()
        src = docs(con, [{"id": f"d{i:02d}", "text": t} for i, t in enumerate(texts)])
        settings = LabelSettings(sets=[topic_set([LabelRule(value="sport", keywords=["team"])], model=True)], seed=3)
        run_label(con, src, settings, gold=gold_table(), batch_size=batch_size, log=None)
        outputs.append((con.sql("SELECT * FROM kept").fetchall(), con.sql("SELECT * FROM label_details").fetchall()))
        con.close()
    assert outputs[0] == outputs[1] == outputs[2]


def test_read_gold_validates_with_file_and_line(tmp_path):
    sets = [topic_set()]
    good = tmp_path / "gold.jsonl"
    good.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "2", "text": "snow", "topic": "weather"},
        {"id": 1, "title": "T", "text": "goal", "topic": "sport", "note": "ignored"},
        {"id": "3", "text": "unlabelled", "topic": None},
    ]) + "\n\n", encoding="utf-8")
    t = read_gold(good, sets)
    assert t.column_names == ["id", "title", "text", "topic"]
    assert t.to_pylist() == [{"id": "1", "title": "T", "text": "goal", "topic": "sport"},
                             {"id": "2", "title": None, "text": "snow", "topic": "weather"},
                             {"id": "3", "title": None, "text": "unlabelled", "topic": None}]

    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"id": "1", "text": "a", "topic": "sport"}\n{"id": "2", "text": \n', encoding="utf-8")
    with pytest.raises(GoldError, match=r"bad\.jsonl:2: not valid JSON"):
        read_gold(bad_json, sets)
    bad_value = tmp_path / "value.jsonl"
    bad_value.write_text('{"id": "1", "text": "a", "topic": "politics"}\n', encoding="utf-8")
    with pytest.raises(GoldError, match=r"value\.jsonl:1: topic = 'politics' is not one of the allowed values "
                                        r"\['sport', 'cooking', 'weather'\]"):
        read_gold(bad_value, sets)
    repeated = tmp_path / "rep.jsonl"
    repeated.write_text('{"id": "1", "text": "a", "topic": "sport"}\n{"id": "1", "text": "b"}\n', encoding="utf-8")
    with pytest.raises(GoldError, match=r"rep\.jsonl:2: id '1' repeats line 1"):
        read_gold(repeated, sets)
    none = tmp_path / "none.jsonl"
    none.write_text('{"id": "1", "text": "a", "subject": "sport"}\n', encoding="utf-8")
    with pytest.raises(GoldError, match="no line labels any of the label sets"):
        read_gold(none, sets)


def test_run_label_reads_the_configured_gold_file_and_checks_gold_tables(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in gold_rows()), encoding="utf-8")
    con = memory_connection()
    src = docs(con, [{"id": "u", "text": UNSEEN_ZH[1][0]}])
    res = run_label(con, src, LabelSettings(sets=[topic_set(model=True)], gold=str(path)), log=None)
    assert res.extra["topic_model_train_rows"] == 84 and labels(con)["u"][:2] == ("cooking", "model")
    bad = pa.table({"id": ["1"], "text": ["x"], "topic": ["politics"]})
    with pytest.raises(GoldError, match="not one of the allowed values"):
        run_label(con, src, LabelSettings(sets=[topic_set(model=True)]), gold=bad, log=None)


def test_bad_input_is_refused():
    con = memory_connection()
    con.sql("CREATE TABLE no_text AS SELECT 'a' AS id")
    with pytest.raises(ValueError, match="needs a 'text' column"):
        run_label(con, "no_text", LabelSettings(sets=[topic_set()]), log=None)
    con.sql("CREATE TABLE twice AS SELECT 'a' AS id, 'x' AS text FROM range(2)")
    with pytest.raises(ValueError, match="repeated ids"):
        run_label(con, "twice", LabelSettings(sets=[topic_set()]), log=None)
