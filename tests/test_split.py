"""Splits: no group leaks across splits, old documents never move, shares stay balanced."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pytest

from dataset_platform.config import SplitSettings
from dataset_platform.contracts.schema import SPLITS
from dataset_platform.release.split import assign_splits
from dataset_platform.storage import memory_connection

TOPICS = ["news", "science", "sports", "arts", "law"]
TOPIC_SHARES = [0.45, 0.25, 0.15, 0.10, 0.05]
STRAT = SplitSettings(stratify_by="topic", tolerance=0.02)


def _docs(n: int, seed: int, prefix: str = "d") -> list[dict]:
    """``n`` synthetic documents: topics with uneven shares, clusters of 2-5 near-duplicates
    (same topic), some URLs shared by several documents, 300 domains (some with www. / ports)."""
    rng = np.random.default_rng(seed)
    docs: list[dict] = []
    i = 0
    while len(docs) < n:
        size = int(rng.choice([1, 1, 1, 1, 1, 1, 2, 3, 4, 5]))
        size = min(size, n - len(docs))
        topic = TOPICS[int(rng.choice(len(TOPICS), p=TOPIC_SHARES))]
        cluster = f"{prefix}c{i:05d}"
        for _ in range(size):
            did = f"{prefix}{len(docs):05d}"
            host = f"site{int(rng.integers(300))}.example"
            host = ("www." if rng.random() < 0.2 else "") + host + (":8080" if rng.random() < 0.1 else "")
            docs.append({"id": did, "url": f"https://{host}/{did}", "content_hash": hashlib.md5(did.encode()).hexdigest(),
                         "cluster_id": cluster, "topic": topic, "text": f"text of {did}"})
        i += 1
    # 5% of the documents carry the URL of an earlier document (the same page seen twice)
    for j in rng.choice(np.arange(1, n), size=n // 20, replace=False):
        docs[int(j)]["url"] = docs[int(rng.integers(int(j)))]["url"]
    return docs


def _load(con, name: str, docs: list[dict]) -> None:
    con.register("_t", pa.Table.from_pylist(docs))
    con.sql(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _t")
    con.unregister("_t")


def _splits(con) -> dict[str, str]:
    return dict(con.sql("SELECT id, split FROM split_docs").fetchall())


def _deviation(con, column: str = "topic") -> float:
    """max |share of a value in a split - share in the whole|, computed here from split_docs."""
    rows = con.sql(f"SELECT split, {column} FROM split_docs").fetchall()
    whole = Counter(v for _, v in rows)
    per = defaultdict(Counter)
    for s, v in rows:
        per[s][v] += 1
    n = len(rows)
    return max(abs(per[s][v] / sum(per[s].values()) - whole[v] / n) for s in per for v in whole)


def _domain(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def test_ratios_within_group_granularity_and_deterministic():
    con = memory_connection()
    _load(con, "docs", _docs(5000, seed=1))
    stats = assign_splits(con, "docs", STRAT)
    first = con.sql("SELECT * FROM split_docs").fetchall()
    assert stats.rows == dict(con.sql("SELECT split, count(*) FROM split_docs GROUP BY 1").fetchall())
    assert sum(stats.rows.values()) == 5000 and stats.new == 5000 and stats.kept_from_previous == 0
    assert stats.straddling_groups == 0
    # each stratum fills its quota up to half a group at each of two boundaries
    biggest = con.sql("SELECT max(n) FROM (SELECT count(*) AS n FROM split_docs GROUP BY group_key)").fetchall()[0][0]
    for split, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(stats.rows[split] - ratio * 5000) <= len(TOPICS) * biggest, (split, stats.rows)
    # carried columns, id order, group count
    assert list(con.sql("SELECT * FROM split_docs").columns) == [
        "id", "url", "content_hash", "cluster_id", "topic", "text", "split", "group_key"]
    assert [r[0] for r in first] == sorted(r[0] for r in first)
    assert stats.groups == con.sql("SELECT count(DISTINCT group_key) FROM split_docs").fetchall()[0][0]
    # the same inputs give the same output, also on a fresh connection
    again = assign_splits(con, "docs", STRAT)
    assert con.sql("SELECT * FROM split_docs").fetchall() == first and again == stats
    other = memory_connection()
    _load(other, "docs", _docs(5000, seed=1))
    assert assign_splits(other, "docs", STRAT) == stats
    assert other.sql("SELECT * FROM split_docs").fetchall() == first
    # another salt gives another (still balanced) assignment
    salted = assign_splits(con, "docs", STRAT.model_copy(update={"salt": "other"}))
    assert salted.max_share_deviation <= 0.02
    moved = sum(a != b for a, b in zip((r[-2] for r in first), _splits(con).values()))
    assert moved > 500


def test_no_cluster_url_or_domain_straddles():
    con = memory_connection()
    _load(con, "docs", _docs(5000, seed=2))
    assert assign_splits(con, "docs", STRAT).straddling_groups == 0
    rows = con.sql("SELECT cluster_id, url, split, group_key FROM split_docs").fetchall()
    for col in (0, 1, 3):
        seen = defaultdict(set)
        for r in rows:
            seen[r[col]].add(r[2])
        assert all(len(s) == 1 for s in seen.values())
    # shared URLs really link documents of different clusters: there are groups of several clusters
    assert max(Counter(g for _, g in {(r[0], r[3]) for r in rows}).values()) >= 2

    by_domain = SplitSettings(group_by=["domain"], stratify_by="topic", tolerance=0.05)
    stats = assign_splits(con, "docs", by_domain)
    seen = defaultdict(set)
    for url, split in con.sql("SELECT url, split FROM split_docs").fetchall():
        seen[_domain(url)].add(split)
    assert len(seen) == 300 and stats.groups == 300  # www. and ports folded away
    assert all(len(s) == 1 for s in seen.values()) and stats.straddling_groups == 0
    assert all(stats.rows[s] > 0 for s in SPLITS)


def test_components_chain_through_keys_and_group_key_is_stable():
    con = memory_connection()
    _load(con, "docs", [
        {"id": "A", "url": "http://h/u1", "cluster_id": "c1", "content_hash": "hA", "topic": "x"},
        {"id": "B", "url": "http://h/u2", "cluster_id": "c1", "content_hash": "hB", "topic": "x"},
        {"id": "C", "url": "http://h/u2", "cluster_id": "c3", "content_hash": "hC", "topic": "y"},
        # shares A's content hash, but cluster_id is the cluster key when present
        {"id": "D", "url": "http://h/u4", "cluster_id": "c4", "content_hash": "hA", "topic": "y"},
        {"id": "E", "url": None, "cluster_id": None, "content_hash": "hE", "topic": "y"},
    ])
    stats = assign_splits(con, "docs", SplitSettings(salt="s"))
    got = dict(con.sql("SELECT id, group_key FROM split_docs").fetchall())

    def md5(key: str) -> str:
        return hashlib.md5(f"s:{key}".encode()).hexdigest()

    assert got["A"] == got["B"] == got["C"] == min(md5(k) for k in ("cluster:c1", "cluster:c3", "url:http://h/u1",
                                                                     "url:http://h/u2"))
    assert got["D"] == min(md5("cluster:c4"), md5("url:http://h/u4"))
    assert got["E"] == md5("id:E")  # no key: alone
    assert stats.groups == 3 and stats.straddling_groups == 0
    assert len({s for i, s in _splits(con).items() if i in "ABC"}) == 1
    # no keys configured: every document is its own group, keyed by its id
    alone = assign_splits(con, "docs", SplitSettings(salt="s", group_by=[]))
    assert alone.groups == 5
    assert dict(con.sql("SELECT id, group_key FROM split_docs").fetchall()) == {i: md5(f"id:{i}") for i in "ABCDE"}


def test_refresh_keeps_old_documents_and_joins_old_groups():
    con = memory_connection()
    old = _docs(5000, seed=3)
    _load(con, "docs", old)
    first = assign_splits(con, "docs", STRAT)
    con.sql("CREATE TABLE prev AS SELECT * FROM split_assignments")
    before = _splits(con)
    # 20% new: 300 join an old group (its cluster, or its URL), 700 form new groups
    new = _docs(1000, seed=4, prefix="n")
    rng = np.random.default_rng(5)
    anchors = {}
    for k, j in enumerate(rng.choice(5000, size=300, replace=False)):
        doc, anchor = new[k], old[int(j)]
        doc["cluster_id"] = f"n-own{k}" if k % 2 else anchor["cluster_id"]
        doc["url"] = anchor["url"] if k % 2 else f"https://fresh{k}.example/x"
        doc["topic"] = anchor["topic"]
        anchors[doc["id"]] = anchor["id"]
    _load(con, "docs", old + new)
    stats = assign_splits(con, "docs", STRAT, previous_sql="prev")
    after = _splits(con)
    assert all(after[i] == s for i, s in before.items())  # every old document kept its split
    assert all(after[n] == before[a] for n, a in anchors.items())  # new members joined their group
    assert stats.kept_from_previous == 5000 and stats.new == 1000 and stats.straddling_groups == 0
    assert first.max_share_deviation <= 0.02 and stats.max_share_deviation <= 0.02
    for split, ratio in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(stats.rows[split] / 6000 - ratio) < 0.01
    # the new groups were allocated to restore the ratios, not merely hashed
    fresh = [s for i, s in after.items() if i.startswith("n") and i not in anchors]
    assert len(fresh) == 700 and set(fresh) == set(SPLITS)
    # split_assignments = previous + new
    assert con.sql("SELECT count(*), count(DISTINCT id) FROM split_assignments").fetchall()[0] == (6000, 6000)


def test_stratification_deviation_is_what_the_stats_say():
    con = memory_connection()
    _load(con, "docs", _docs(5000, seed=6))
    # shared URLs put documents of different topics in one group (stratified by their own value)
    assign_splits(con, "docs", STRAT)
    mixed = con.sql("SELECT count(*) FROM (SELECT group_key FROM split_docs GROUP BY 1 HAVING count(DISTINCT topic) > 1)")
    assert mixed.fetchall()[0][0] > 50
    plain = assign_splits(con, "docs", SplitSettings(tolerance=0.02))
    assert plain.max_share_deviation is None and plain.shares == [] and plain.balanced
    unstratified = _deviation(con)
    stats = assign_splits(con, "docs", STRAT)
    assert stats.max_share_deviation == pytest.approx(_deviation(con), abs=1e-12)
    assert stats.max_share_deviation <= 0.02 and stats.balanced
    assert stats.max_share_deviation < unstratified  # hashing alone is not as even on the 5% topic
    # the card's table: every split x value, split order then value, shares of the split
    counts = Counter(con.sql("SELECT split, topic FROM split_docs").fetchall())
    expected = [[s, v, counts[(s, v)], round(counts[(s, v)] / stats.rows[s], 6)] for s in SPLITS for v in sorted(TOPICS)]
    assert stats.shares == expected
    # a tolerance the data cannot meet is reported, not hidden
    strict = assign_splits(con, "docs", STRAT.model_copy(update={"tolerance": 0.0}))
    assert not strict.balanced and strict.max_share_deviation == stats.max_share_deviation


def test_removed_document_returns_to_its_split():
    con = memory_connection()
    docs = _docs(5000, seed=7)
    _load(con, "docs", docs)
    assign_splits(con, "docs", STRAT)
    first = _splits(con)
    removed = {d["id"] for d in docs[::10]}
    later = _docs(800, seed=8, prefix="n")
    _load(con, "docs", [d for d in docs if d["id"] not in removed] + later)
    stats = assign_splits(con, "docs", STRAT, previous_sql="split_assignments")  # its own previous output
    assert stats.kept_from_previous == 4500 and stats.new == 800
    kept = dict(con.sql("SELECT id, split FROM split_assignments").fetchall())
    assert len(kept) == 5800 and all(kept[i] == first[i] for i in removed)
    _load(con, "docs", docs + later)
    stats = assign_splits(con, "docs", STRAT, previous_sql="split_assignments")
    back = _splits(con)
    assert stats.kept_from_previous == 5800 and stats.new == 0
    assert all(back[i] == first[i] for i in first)
    # without the stored assignments some returning documents would land elsewhere
    assign_splits(con, "docs", STRAT)
    fresh = _splits(con)
    assert sum(fresh[i] != first[i] for i in first) > 0


def test_bridge_between_old_groups_is_counted():
    con = memory_connection()
    _load(con, "docs", [
        {"id": "a1", "url": "http://h/1", "content_hash": "c1"},
        {"id": "b1", "url": "http://h/2", "content_hash": "c2"},
        {"id": "b2", "url": "http://h/3", "content_hash": "c2"},
        {"id": "x", "url": "http://h/1", "content_hash": "c2"},  # bridges a1 (train) and b1, b2 (test)
        {"id": "p1", "url": "http://h/7", "content_hash": "c7"},
        {"id": "q1", "url": "http://h/8", "content_hash": "c8"},
        {"id": "y", "url": "http://h/7", "content_hash": "c8"},  # bridges p1 (validation) and q1 (train)
        {"id": "z", "url": "http://h/9", "content_hash": "c9"},
    ])
    con.sql("CREATE TABLE prev AS SELECT * FROM (VALUES ('a1', 'train'), ('b1', 'test'), ('b2', 'test'), "
            "('p1', 'validation'), ('q1', 'train')) t(id, split)")
    stats = assign_splits(con, "docs", SplitSettings(), previous_sql="prev")
    got = _splits(con)
    assert (got["a1"], got["b1"], got["b2"], got["p1"], got["q1"]) == ("train", "test", "test", "validation", "train")
    assert got["x"] == "test"  # the majority of the old members
    assert got["y"] == "train"  # a tie goes to the earlier split
    assert stats.straddling_groups == 2 and stats.groups == 3
    assert stats.kept_from_previous == 5 and stats.new == 3


def test_bad_inputs_are_refused():
    con = memory_connection()
    con.sql("CREATE TABLE d AS SELECT * FROM (VALUES ('1', 'http://a'), ('1', 'http://b')) t(id, url)")
    with pytest.raises(ValueError, match="neither cluster_id nor content_hash"):
        assign_splits(con, "d", SplitSettings())
    with pytest.raises(ValueError, match="repeated ids"):
        assign_splits(con, "d", SplitSettings(group_by=["url"]))
    with pytest.raises(ValueError, match="topic"):
        assign_splits(con, "d", SplitSettings(group_by=["url"], stratify_by="topic"))
    con.sql("CREATE TABLE ok AS SELECT * FROM (VALUES ('1', 'http://a'), ('2', 'http://b')) t(id, url)")
    con.sql("CREATE TABLE prev AS SELECT * FROM (VALUES ('1', 'train'), ('1', 'test')) t(id, split)")
    with pytest.raises(ValueError, match="contradictory"):
        assign_splits(con, "ok", SplitSettings(group_by=["url"]), previous_sql="prev")
    # an empty previous table and an empty input are fine
    con.sql("CREATE TABLE none AS SELECT * FROM prev WHERE false")
    assert assign_splits(con, "ok", SplitSettings(group_by=["url"]), previous_sql="none").new == 2
    empty = assign_splits(con, "(SELECT * FROM ok WHERE false)", SplitSettings(group_by=["url"]))
    assert empty.rows == {"train": 0, "validation": 0, "test": 0} and empty.groups == 0


def _refresh_world(rng, docs: dict[str, dict], step: int) -> dict[str, dict]:
    """The next state: documents leave, change (cluster, URL or topic), stay; new ones arrive, some
    sharing an old document's cluster or URL (bridges between old groups included)."""
    out = {}
    for i, d in docs.items():
        r = rng.random()
        if r < 0.04:
            continue  # gone
        d = dict(d)
        if r < 0.06:
            d["cluster_id"] = f"ch{step}-{i}"
        elif r < 0.08:
            d["url"] = docs[rng.choice(sorted(docs))]["url"]  # now shares another document's URL
        elif r < 0.09:
            d["topic"] = TOPICS[int(rng.integers(len(TOPICS)))]
        out[i] = d
    old = sorted(out)
    for d in _docs(int(rng.integers(50, 400)), seed=1000 + step, prefix=f"s{step}-"):
        if old and rng.random() < 0.15:
            anchor = out[old[int(rng.integers(len(old)))]]
            d["cluster_id" if rng.random() < 0.5 else "url"] = anchor["cluster_id" if rng.random() < 0.5 else "url"]
        out[d["id"]] = d
    return out


def _last_run(con, docs: dict[str, dict], new: dict[str, dict]) -> None:
    """``prev`` (the split assignments so far) and ``last_run`` (id, group key, clean: unchanged in
    ``new``) from the last call's tables, before the next call on ``new``."""
    con.sql("CREATE OR REPLACE TABLE prev AS SELECT * FROM split_assignments")
    last = dict(con.sql("SELECT id, group_key FROM split_docs").fetchall())
    clean = {i: i in new and all(new[i][k] == docs[i][k] for k in ("cluster_id", "url", "topic")) for i in last}
    con.register("_l", pa.table({"id": list(last), "group_key": [last[i] for i in last],
                                 "clean": [clean[i] for i in last]}))
    con.sql("CREATE OR REPLACE TABLE last_run AS SELECT * FROM _l")
    con.unregister("_l")


@pytest.mark.parametrize("settings", [STRAT, SplitSettings(group_by=["domain"], stratify_by="topic"),
                                      SplitSettings(group_by=["cluster"])], ids=["cluster+url", "domain", "cluster"])
def test_a_refresh_by_difference_gives_what_the_whole_computation_gives(settings):
    """Random refreshes: groups recomputed only around what changed (``last_run_sql``) give the
    same splits, group keys, assignments and statistics as the whole computation."""
    rng = np.random.default_rng(11)
    docs = {d["id"]: d for d in _docs(3000, seed=12)}
    con = memory_connection()
    _load(con, "docs", list(docs.values()))
    assign_splits(con, "docs", settings)
    region_sizes = []
    for step in range(6):
        new = _refresh_world(rng, docs, step)
        _last_run(con, docs, new)
        docs = new
        _load(con, "docs", list(docs.values()))
        full = assign_splits(con, "docs", settings, previous_sql="prev")
        want_docs = con.sql("SELECT id, split, group_key FROM split_docs ORDER BY id").fetchall()
        want_assign = con.sql("SELECT * FROM split_assignments ORDER BY id").fetchall()
        by_diff = assign_splits(con, "docs", settings, previous_sql="prev", last_run_sql="last_run")
        assert con.sql("SELECT id, split, group_key FROM split_docs ORDER BY id").fetchall() == want_docs
        assert con.sql("SELECT * FROM split_assignments ORDER BY id").fetchall() == want_assign
        region_sizes.append(by_diff.recomputed)
        by_diff.recomputed = full.recomputed
        assert by_diff == full, step
    assert max(region_sizes) < len(docs)  # the region is smaller than the whole
