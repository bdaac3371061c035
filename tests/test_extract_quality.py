"""Extraction quality on the labelled pages of the shared corpus (``webextract/``), with floors.

The same evaluation as ``bench/extract_eval.py`` (token precision/recall/F1 against the full-text
ground truth, macro over pages). Floors sit a little under the figures in BENCHMARKS.md so a
regression of the chain fails here; and ours must stay at least as good as trafilatura's defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import shared_corpus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import extract_eval

FLOORS_F1 = {"en": 0.93, "zh": 0.87, "all": 0.92}


@pytest.fixture(scope="module")
def summary():
    corpus = shared_corpus("webextract")
    systems = ("ours", "traf_default")
    results = extract_eval.evaluate(corpus, systems, workers=2)
    return extract_eval.summarise(results, systems)


@pytest.mark.parametrize("lang", sorted(FLOORS_F1))
def test_f1_floor_per_language(summary, lang):
    n, p, r, f1 = summary["full"][lang]["ours"]
    assert n >= 30 if lang != "all" else n >= 200
    assert f1 >= FLOORS_F1[lang], (lang, p, r, f1)


def test_no_worse_than_trafilatura_defaults(summary):
    for lang, per in summary["full"].items():
        assert per["ours"][3] >= per["traf_default"][3] - 1e-9, (lang, per)
    for lang, per in summary["snippets"].items():
        assert per["ours"][1] >= per["traf_default"][1] - 1e-9, (lang, per)  # wanted text found
