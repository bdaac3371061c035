"""A source name with a hyphen (README's `cc-sample`, `my-blog`) is valid in sources.yaml but not
in Dagster's names: it runs, under a Dagster name with `_` (issue 20)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from graphkit import document, write_jsonl

from dataset_platform.definitions import build_definitions

REPO = Path(__file__).resolve().parents[1]


def _blog(tmp_path: Path) -> Path:
    rng = random.Random(7)
    records = [{"body": document(rng, topic), "link": f"https://blog.example.org/{topic}/{i}", "subject": f"{topic} {i}"}
               for i in range(12) for topic in ("garden", "harbour", "school")]
    write_jsonl(tmp_path / "posts" / "blog.jsonl", records)
    cfg = tmp_path / "sources.yaml"
    cfg.write_text("sources:\n  - name: my-blog\n    kind: jsonl\n    paths: [posts/*.jsonl]\n"
                   "    fields: {text: body, url: link, title: subject}\n", encoding="utf-8")
    return cfg


def test_a_hyphenated_source_has_a_valid_schedule_for_its_partition(tmp_path):
    defs = build_definitions(_blog(tmp_path), tmp_path / "w")
    sched = defs.resolve_schedule_def("refresh_my_blog")
    (req,) = sched.evaluate_tick(dg.build_schedule_context(repository_def=defs.get_repository_def())).run_requests
    assert req.partition_key == "my-blog"  # the partition keeps the name as written


@pytest.mark.slow
def test_dataset_platform_run_on_a_hyphenated_jsonl_source(tmp_path):
    cfg = _blog(tmp_path)
    wd = tmp_path / "wd"
    proc = subprocess.run([sys.executable, "-m", "dataset_platform.cli", "run", "--config", str(cfg), "--workdir", str(wd)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "DAGSTER_HOME": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "succeeded" in proc.stdout and "newest batch of my-blog" in proc.stdout
    latest = next((wd / "releases").glob("*/LATEST"))
    data = latest.parent / latest.read_text().strip() / "data"
    per_source = duckdb.sql(f"SELECT source, count(*) FROM read_parquet('{data}/*.parquet') GROUP BY 1").fetchall()
    assert per_source == [("my-blog", 36)]
