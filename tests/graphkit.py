"""Helpers for tests that run the whole graph as library code (no Dagster): a small deterministic
English corpus of our own, landed batches of a dump source and of a crawl source, and a refresh
of every layer (raw, the registered stages, rejects, release)."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

import pyarrow.parquet as pq

from dataset_platform import runner
from dataset_platform.config import PlatformConfig, parse_config
from dataset_platform.ingest.refresh import materialise_raw
from dataset_platform.release.materialise import materialise_release
from dataset_platform.stages.registry import STAGES
from dataset_platform.workdir import Workdir

TOPICS = {
    "garden": "tomato bean compost seedling greenhouse soil harvest orchard pruning mulch".split(),
    "harbour": "ferry pier tide lighthouse crane cargo trawler quay anchor dock".split(),
    "school": "teacher lesson pupil timetable library exam classroom homework term headmaster".split(),
}
FILLER = ("morning evening village council weather market neighbours river bridge station road week "
          "year plan report visit family story season change price").split()
STOP = "the of and to with that have be".split()


def sentence(rng: random.Random, topic: str) -> str:
    words = []
    for _ in range(rng.randint(9, 15)):
        r = rng.random()
        words.append(rng.choice(STOP) if r < 0.35 else rng.choice(TOPICS[topic]) if r < 0.6 else rng.choice(FILLER))
    return " ".join(words).capitalize() + "."


def document(rng: random.Random, topic: str) -> str:
    """Three paragraphs of 2-3 sentences: passes the Gopher / C4 / FineWeb rules."""
    return "\n".join(" ".join(sentence(rng, topic) for _ in range(rng.randint(2, 3))) for _ in range(3))


def near_copy(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    i = rng.randrange(len(words))
    words[i] = rng.choice(FILLER)
    return " ".join(words)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    return path


_CLOCK = [1_800_000_000_000_000_000]


def land_crawl(wd: Workdir, source: str, stamp: str, records: list[dict]) -> Path:
    """A crawl batch as the crawler lands it (``<source>-<UTC time>Z.jsonl.gz``), landing order
    given by its mtime."""
    p = wd.raw_batches(source) / f"{source}-{stamp}Z.jsonl.gz"
    p.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    _CLOCK[0] += 1_000_000_000
    os.utime(p, ns=(_CLOCK[0], _CLOCK[0]))
    return p


def crawl_record(url: str, outcome: str = "fetched", *, html: str | None = None, status: int = 200) -> dict:
    import hashlib

    body = html if outcome == "fetched" else None
    return {"url": url, "fetch_url": url, "outcome": outcome, "detail": None,
            "status": 304 if outcome == "not_modified" else status, "content_type": "text/html",
            "charset": "utf-8", "fetched_at": "2026-11-01T10:00:00.000000Z", "depth": 0, "referer": None,
            "body_bytes": len(body.encode()) if body else None,
            "content_hash": hashlib.md5(body.encode()).hexdigest() if body else None,
            "etag": None, "last_modified": None, "headers": "{}", "title": None, "text": None, "html": body}


def page(title: str, text: str) -> str:
    paras = "".join(f"<p>{p}</p>" for p in text.split("\n"))
    return (f"<!doctype html><html lang='en'><head><title>{title}</title></head><body><nav>Home | News</nav>"
            f"<article><h1>{title}</h1>{paras}</article><footer>Site footer</footer></body></html>")


def config(root: Path, *, sources: list[str] = ("news", "site"), word_count_min: int = 50,
           threshold: float = 0.7, garden_words: tuple[str, ...] = ("tomato", "compost"),
           benchmark_text: str | None = None) -> PlatformConfig:
    """The test's sources.yaml as a model: a JSONL dump source fed through its inbox and a crawl
    source whose batches the test lands itself (it is never crawled)."""
    srcs = []
    if "news" in sources:
        srcs.append({"name": "news", "kind": "jsonl", "paths": []})
    if "site" in sources:
        srcs.append({"name": "site", "kind": "crawl", "start_urls": ["http://127.0.0.2/"],
                     "allowed_domains": ["127.0.0.2"]})
    bench = write_jsonl(root / "bench.jsonl", [{"id": "q1", "question": benchmark_text or
                                                "what colour is the lighthouse on the northern quay of the old harbour at dawn"}])
    data = {
        "dataset": {"name": "incremental-test"},
        "sources": srcs,
        "pipeline": {
            "part_rows": 100,
            "clean": {"rules": {"gopher_quality.word_count": {"min": word_count_min}}},
            "dedup": {"threshold": threshold},
            "labels": {"sets": [{"name": "topic", "values": ["garden", "harbour", "other"], "default": "other",
                                 "rules": [{"value": "garden", "keywords": list(garden_words)},
                                           {"value": "harbour", "keywords": ["ferry", "tide"]}]}]},
            "decontamination": {"benchmarks": [{"path": str(bench), "fields": ["question"]}]},
        },
    }
    return parse_config(data, origin=str(root / "sources.yaml"))


def refresh(cfg: PlatformConfig, wd: Workdir, log=lambda _m: None) -> dict:
    """Every layer, as one run of the graph does (the crawl source is not crawled: its batches
    are landed by the test)."""
    waiting = [s.name for s in cfg.sources if any(wd.raw_batches(s.name).glob("*.jsonl.gz"))
               or any(wd.raw_batches(s.name).glob("*.parquet"))
               or (wd.inbox(s.name).is_dir() and any(wd.inbox(s.name).iterdir()))]
    raw = materialise_raw(cfg, wd, log=log, sources=waiting, crawl=False)
    out = {"raw_pages": raw}
    for st in STAGES:
        out[st.output] = runner.materialise(st, cfg, wd, log=log)
    out["rejected_documents"] = runner.materialise_rejected(cfg, wd, log=log)
    out["dataset_release"] = materialise_release(cfg, wd, log=log)
    return out


def parts(wd: Workdir, layer: str, file: str = "data.parquet") -> dict[str, list[dict]]:
    """Every part's rows of a layer stored by batch, by key (a table's rows as dicts)."""
    root = wd.layer_dir(layer)
    out = {}
    for f in sorted(root.glob(f"*/*/{file}")):
        out[f"{f.parent.parent.name}/{f.parent.name}"] = pq.read_table(f).to_pylist()
    return out
