"""What `dataset-platform run` prints when a run fails or warns: the reason, not Dagster's wrapper.

Each test runs the real graph (Dagster, DuckDB, GX) on a small JSONL dump of our own text."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import pytest
from graphkit import document, write_jsonl

from dataset_platform.cli import EXIT_FAILED, EXIT_OK, run_pipeline

pytestmark = pytest.mark.slow


def _dump(root: Path, n: int = 24) -> None:
    rng = random.Random(7)
    write_jsonl(root / "dumps" / "news.jsonl", [
        {"text": document(rng, ("garden", "harbour", "school")[i % 3]), "url": f"http://news.test/{i}",
         "title": f"Story {i}"} for i in range(n)])


def _config(root: Path, pipeline: str) -> Path:
    cfg = root / "sources.yaml"
    cfg.write_text("dataset: {name: summary-test}\n"
                   "sources:\n  - name: news\n    kind: jsonl\n    paths: [dumps/*.jsonl]\n"
                   "pipeline:\n  labels:\n    sets:\n      - name: topic\n        values: [garden, harbour, other]\n"
                   "        default: other\n        rules:\n          - {value: garden, keywords: [tomato, compost]}\n"
                   + pipeline, encoding="utf-8")
    return cfg


@pytest.fixture(autouse=True)
def _own_environment(tmp_path, monkeypatch):
    """run_pipeline sets these for Dagster's code: restored after each test."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    for var in ("DATASET_PLATFORM_CONFIG", "DATASET_PLATFORM_WORKDIR"):
        monkeypatch.setenv(var, "")


def _run(tmp_path: Path, pipeline: str) -> tuple[int, str]:
    _dump(tmp_path)
    out = io.StringIO()
    rc = run_pipeline(_config(tmp_path, pipeline), str(tmp_path / "work"), out=out)
    return rc, out.getvalue()


def test_a_stage_that_drops_everything_says_why_and_the_blocking_check_shows_observed_and_expected(tmp_path):
    rc, text = _run(tmp_path, "  clean: {languages: [de]}\n")  # English text, German wanted
    assert rc == EXIT_FAILED
    assert "drop reasons:" in text and "language_not_wanted" in text  # the counts so far stay in the summary
    assert "note: clean dropped all 24 documents, 24 of them for language_not_wanted" in text
    assert "pipeline.clean.languages" in text
    # the failed expectation with what it expected and what it saw, under the check's name
    check = text.split("FAILED cleaned_documents:gx_suite", 1)[1]
    assert "table_row_count_to_be_between(min_value=1): observed 0" in check.splitlines()[1]
    why = text.split("why the run failed:", 1)[1]
    assert "blocking check cleaned_documents:gx_suite failed" in why and "what to do:" in why
    assert "Error occurred while executing" not in text


def test_a_step_that_raises_ends_with_its_own_message(tmp_path):
    """A part of a layer damaged on disk (what pre-flight cannot know): the next run's step that reads it
    fails, and the summary ends with that step's own error, not Dagster's wrapper."""
    rc, text = _run(tmp_path, "")
    assert rc == EXIT_OK, text
    (part,) = sorted((tmp_path / "work" / "layers" / "deduplicated_documents").glob("*/*/data.parquet"))
    part.write_bytes(b"not a parquet file")
    cfg = _config(tmp_path, "")
    out = io.StringIO()
    rc = run_pipeline(cfg, str(tmp_path / "work"), out=out)
    text = out.getvalue()
    assert rc == EXIT_FAILED
    why = text.split("why the run failed:", 1)[1]
    # the first step to read the damaged part (dedup reads what it kept before) says what DuckDB said
    assert "step deduplicated_documents raised" in why and "No magic bytes found" in why
    assert "Error occurred while executing" not in why and "what to do:" in why
    assert "documents per stage:" in text and "cleaned_documents" in text  # counts so far


def test_a_warning_lists_the_measure_and_its_bound(tmp_path):
    rc, text = _run(tmp_path, "  quality: {min_languages: 3}\n  splits: {stratify_by: topic, tolerance: 0.0}\n")
    assert rc == EXIT_OK, text

    def reason(check: str) -> str:
        line = next(ln for ln in text.splitlines() if f"dataset_release:{check}" in ln)
        assert line.strip().startswith("warn") and "(does not block)" in line
        return text.split(line, 1)[1].splitlines()[1]

    assert "languages 1 (at least 3)" in reason("diversity_and_balance")
    assert re.search(r"topic=\w+: a share of [0-9.]+ in \w+ against [0-9.]+ of the whole: deviation [0-9.]+ > "
                     r"tolerance 0.0", reason("split_balance"))
