"""Refreshes cost what changed and give what a full rebuild gives.

Random sequences of batches - new documents (with exact and near duplicates and junk), changed
documents, crawl snapshots where pages change, stay, vanish or go 404, settings changes - are run
both ways: world A refreshes after every step, world B lands the same batches into an empty work
folder and builds once with the final settings. Every per-batch layer must be identical part by
part; the global layers equal except where a documented history rule applies: dedup's keeper of
a group is the document kept before (so A may keep another member of the very same group, and
the layers below follow it; where a newcomer links groups that each had a keeper, A keeps them
all), and a document keeps the split a release gave it.
"""

from __future__ import annotations

import random
import shutil

import pyarrow.parquet as pq
import pytest
from graphkit import (
    TOPICS,
    config,
    crawl_record,
    document,
    land_crawl,
    near_copy,
    page,
    parts,
    refresh,
    write_jsonl,
)

from dataset_platform.release.materialise import current_release
from dataset_platform.storage import read_layer
from dataset_platform.workdir import Workdir

PER_BATCH_BEFORE_DEDUP = ("raw_pages", "extracted_documents", "cleaned_documents")
PER_BATCH_AFTER_DEDUP = ("labelled_documents", "decontaminated_documents")


class World:
    """What the test feeds the graph: the texts currently at each URL, and the settings."""

    def __init__(self, tmp, seed: int):
        self.tmp, self.rng = tmp, random.Random(seed)
        self.news: dict[str, str] = {}
        self.site: dict[str, str] = {}
        self.settings: dict = {}
        self.n = 0
        self.step = 0

    def _text(self) -> str:
        rng = self.rng
        pool = list(self.news.values()) + list(self.site.values())
        r = rng.random()
        if pool and r < 0.1:
            return rng.choice(pool)  # an exact duplicate under a new URL
        if pool and r < 0.2:
            return near_copy(rng, rng.choice(pool))
        if r < 0.28:
            return "Short note. Nothing else here."  # junk: dropped by the quality rules
        return document(rng, rng.choice(sorted(TOPICS)))

    def new(self, wd: Workdir) -> None:
        recs = []
        for _ in range(self.rng.randint(40, 160)):
            self.n += 1
            url = f"https://news.test/{self.n}"
            self.news[url] = self._text()
            recs.append({"url": url, "title": f"Story {self.n}", "text": self.news[url]})
        write_jsonl(wd.inbox("news") / f"drop-{self.step:03d}.jsonl", recs)

    def changed(self, wd: Workdir) -> None:
        urls = self.rng.sample(sorted(self.news), min(12, len(self.news)))
        for u in urls:
            self.news[u] = document(self.rng, self.rng.choice(sorted(TOPICS)))
        write_jsonl(wd.inbox("news") / f"drop-{self.step:03d}.jsonl",
                    [{"url": u, "title": "Revised", "text": self.news[u]} for u in urls])

    def crawl(self, wd: Workdir) -> None:
        recs = []
        for url in sorted(self.site):
            r = self.rng.random()
            if r < 0.5:
                recs.append(crawl_record(url, "not_modified"))
            elif r < 0.7:
                self.site[url] = document(self.rng, self.rng.choice(sorted(TOPICS)))
                recs.append(crawl_record(url, html=page("Changed", self.site[url])))
            elif r < 0.8:
                recs.append(crawl_record(url, "failed:http_404", status=404))
                del self.site[url]
            elif r < 0.9:
                recs.append(crawl_record(url, "failed:timeout", status=None))  # transient: the old copy stays
            else:
                del self.site[url]  # not reached by this crawl: it leaves the snapshot
        for _ in range(self.rng.randint(20, 80)):
            self.n += 1
            url = f"http://site.test/p{self.n}"
            self.site[url] = self._text()
            recs.append(crawl_record(url, html=page(f"Page {self.n}", self.site[url])))
        land_crawl(wd, "site", f"20270101T{self.step:06d}", recs)

    def change_settings(self) -> None:
        what = self.rng.choice(["word_count_min", "threshold", "garden_words", "benchmark"])
        if what == "word_count_min":
            self.settings[what] = self.rng.choice([40, 50, 60, 70])
        elif what == "threshold":
            self.settings[what] = self.rng.choice([0.6, 0.7, 0.8])
        elif what == "garden_words":
            self.settings[what] = tuple(self.rng.sample(TOPICS["garden"], 2))
        else:  # an evaluation item that some document holds
            self.settings["benchmark_text"] = self.rng.choice(list(self.news.values()) or ["none"]).split("\n")[0]

    def config(self):
        return config(self.tmp, **self.settings)


def _groups(wd: Workdir) -> dict[str, frozenset]:
    """Duplicate groups: every kept document with the documents dropped for it."""
    import duckdb

    con = duckdb.connect()
    kept = [r[0] for r in con.sql(f"SELECT id FROM {read_layer(wd, 'deduplicated_documents')}").fetchall()]
    dropped = con.sql(f"SELECT keeper_id, doc_id FROM read_parquet('{wd.layer('duplicate_clusters')}')").fetchall()
    members: dict[str, set] = {k: {k} for k in kept}
    for keeper, doc in dropped:
        members[keeper].add(doc)
    return {d: frozenset(g) for g in members.values() for d in g}


def _rows(wd: Workdir, layer: str) -> dict[str, dict]:
    return {r["id"]: r for rows in parts(wd, layer).values() for r in rows}


def _run(tmp_path, seed: int, steps: int, ops=None):
    w = World(tmp_path, seed)
    a = Workdir.at(tmp_path / "A").ensure()
    kept_before: set[str] = set()  # every document world A kept at some step
    plan = ops or (["new", "crawl"] + [w.rng.choice(["new", "new", "changed", "crawl", "settings"])
                                       for _ in range(steps - 2)])
    for w.step, op in enumerate(plan):
        {"new": w.new, "changed": w.changed, "crawl": w.crawl}.get(op, lambda _wd: w.change_settings())(a)
        refresh(w.config(), a)
        kept_before |= set(_rows(a, "deduplicated_documents"))
    b = Workdir.at(tmp_path / "B").ensure()
    for source in ("news", "site"):  # the same landed batches, in the same order (mtimes kept)
        for f in sorted(p for p in a.raw_batches(source).iterdir() if p.name.endswith((".jsonl.gz", ".parquet"))):
            dest = b.raw_batches(source) / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
    refresh(w.config(), b)
    return a, b, kept_before, plan


def _compare(a: Workdir, b: Workdir, kept_before: set[str]) -> None:
    for layer in PER_BATCH_BEFORE_DEDUP:  # identical, part by part
        assert parts(a, layer) == parts(b, layer), layer
        if layer != "raw_pages":
            assert parts(a, layer, "rejected.parquet") == parts(b, layer, "rejected.parquet"), layer
    ga, gb = _groups(a), _groups(b)
    # the same documents in duplicate groups; A's groups may split B's: where a newcomer linked
    # groups that each had a keeper, A keeps every one of those keepers (the history rule)
    assert set(ga) == set(gb) and all(ga[d] <= gb[d] for d in ga)
    ka, kb = set(_rows(a, "deduplicated_documents")), set(_rows(b, "deduplicated_documents"))
    # where the keepers differ, world A kept the one(s) it had kept before (the history rule)
    assert (ka - kb) <= kept_before
    assert all(len(g & ka) == 1 for g in set(ga.values())) and all(len(g & kb) == 1 for g in set(gb.values()))
    both = ka & kb
    for layer in ("deduplicated_documents", *PER_BATCH_AFTER_DEDUP):
        ra, rb = _rows(a, layer), _rows(b, layer)
        assert {i: ra[i] for i in both if i in ra} == {i: rb[i] for i in both if i in rb}, layer
        assert set(ra) - set(rb) <= ka - kb and set(rb) - set(ra) <= kb - ka, layer
    for layer in PER_BATCH_AFTER_DEDUP:  # the same parts, holding the same ids but for the keepers
        assert set(parts(a, layer)) == set(parts(b, layer))
    ra = {r["id"]: r for r in pq.read_table(current_release_dir(a) / "data").to_pylist()}
    rb = {r["id"]: r for r in pq.read_table(current_release_dir(b) / "data").to_pylist()}
    assert set(ra) - set(rb) <= ka - kb
    drop = lambda r: {k: v for k, v in r.items() if k != "split"}
    assert {i: drop(ra[i]) for i in both if i in ra} == {i: drop(rb[i]) for i in both if i in rb}


def current_release_dir(wd: Workdir):
    folder = wd.releases / "incremental-test"
    return folder / (folder / "LATEST").read_text().strip()


def test_a_fixed_sequence_both_ways(tmp_path):
    a, b, kept_before, _ = _run(tmp_path, seed=7, steps=6, ops=["new", "crawl", "changed", "settings", "crawl", "new"])
    _compare(a, b, kept_before)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences_both_ways(tmp_path, seed):
    a, b, kept_before, plan = _run(tmp_path, seed=seed, steps=8)
    _compare(a, b, kept_before)


def test_a_refresh_with_nothing_new_computes_nothing(tmp_path):
    w = World(tmp_path, 3)
    wd = Workdir.at(tmp_path / "A").ensure()
    w.new(wd)
    refresh(w.config(), wd)
    # (the dedup stage's MinHash index writes its small bookkeeping files on every run)
    files = lambda: {f: f.stat().st_mtime_ns for f in wd.layers.rglob("*.parquet")
                     if "minhash_index" not in f.parts}
    before = files()
    out = refresh(w.config(), wd)
    for layer in ("extracted_documents", "cleaned_documents", "deduplicated_documents", "labelled_documents",
                  "decontaminated_documents"):
        c = out[layer].counters
        assert c["parts_computed"] == c["parts_completed"] == 0 and c["parts_reused"] >= 1, (layer, c)
    assert files() == before
    assert current_release(w.config(), wd) is not None


def _built_then_a_new_batch(tmp_path, seed: int) -> tuple[World, Workdir]:
    """A work folder built from one batch, with a second batch landed in its inbox."""
    w = World(tmp_path, seed)
    wd = Workdir.at(tmp_path / "A").ensure()
    w.new(wd)
    refresh(w.config(), wd)
    w.step = 1
    w.new(wd)
    return w, wd


def test_a_new_batch_computes_only_its_parts_and_a_setting_only_what_it_touches(tmp_path):
    w, wd = _built_then_a_new_batch(tmp_path, 4)
    out = refresh(w.config(), wd)
    for layer in ("extracted_documents", "cleaned_documents", "labelled_documents", "decontaminated_documents"):
        c = out[layer].counters
        assert c["parts_computed"] >= 1 and c["parts_reused"] >= 1 and c["parts_completed"] == 0, (layer, c)
    # a labelling rule changes: extraction and cleaning are untouched, every labelled part is relabelled
    w.settings["garden_words"] = ("harvest", "mulch")
    out = refresh(w.config(), wd)
    for layer in ("extracted_documents", "cleaned_documents", "deduplicated_documents"):
        c = out[layer].counters
        assert c["parts_computed"] == 0 and c["rows_computed"] in (0, out[layer].stage.input_rows), (layer, c)
    assert out["labelled_documents"].counters["parts_reused"] == 0
    assert out["labelled_documents"].counters["parts_computed"] >= 2


def test_suites_can_start_at_the_commit_on_the_files_their_checks_read(tmp_path):
    """The asset steps start their layers' suite checks from ``on_commit`` / ``on_publish``, before
    a stage's finish and views (runner.materialise, materialise_release): what the suite then reads
    is what the check reads at the step's end, so the head start is the check's result."""
    from dataset_platform import runner
    from dataset_platform.checks.gx_worker import _state
    from dataset_platform.ingest.refresh import materialise_raw
    from dataset_platform.release.materialise import materialise_release
    from dataset_platform.stages.registry import STAGES

    w, wd = _built_then_a_new_batch(tmp_path, 5)
    cfg = w.config()
    state = lambda layer: _state(cfg, wd, layer)  # (what gx_worker.prefetch starts on)

    materialise_raw(cfg, wd, sources=["news"], crawl=False)
    for st in STAGES:
        seen: list = []
        out = runner.materialise(st, cfg, wd, on_commit=lambda st=st, seen=seen: seen.append(
            (state(st.output), wd.layer_dir(st.output).joinpath("manifest.json").stat().st_mtime_ns)))
        assert len(seen) == 1, st.name  # called once, with the new parts committed
        assert seen[0] == (state(st.output), wd.layer_dir(st.output).joinpath("manifest.json").stat().st_mtime_ns)
        if st.per_batch:
            assert out.counters["parts_computed"] >= 1, st.name
    runner.materialise_rejected(cfg, wd)
    # a caller's head start that fails does not fail the stage: it is logged, the layer committed
    said: list[str] = []
    again = runner.materialise(STAGES[-1], cfg, wd, log=said.append, on_commit=lambda: 1 / 0)
    assert again.counters["parts_reused"] >= 1 and any("on_commit failed (ZeroDivisionError" in m for m in said)
    published = []
    assignments = lambda: wd.split_assignments.stat().st_mtime_ns  # (the release invariants read them too)
    before = assignments()
    info = materialise_release(cfg, wd, on_publish=lambda: published.append(
        (current_release(cfg, wd), state("dataset_release"), assignments())))
    assert info.created and published == [(info.path, state("dataset_release"), assignments())]
    assert assignments() != before  # (new documents: new assignments, written before on_publish)


def test_parts_computed_on_worker_processes_equal_parts_computed_in_process(tmp_path, monkeypatch):
    from dataset_platform import runner

    w = World(tmp_path, 5)
    one = Workdir.at(tmp_path / "one").ensure()
    w.new(one)  # several parts of 100 documents (part_rows in graphkit.config)
    many = tmp_path / "many"
    shutil.copytree(one.root, many)
    refresh(w.config(), one)
    monkeypatch.setattr(runner, "PARALLEL_MIN_ROWS", 0)  # label and decontaminate: parts on worker processes
    out = refresh(w.config(), Workdir.at(many))
    assert out["labelled_documents"].counters["parts_computed"] > 1
    for layer in ("labelled_documents", "decontaminated_documents"):
        assert parts(one, layer) == parts(Workdir.at(many), layer), layer
        assert parts(one, layer, "details.parquet" if layer == "labelled_documents" else "rejected.parquet") == \
            parts(Workdir.at(many), layer, "details.parquet" if layer == "labelled_documents" else "rejected.parquet")
