"""Quality rules: normalisation, language-routed measurement and the keep/drop decision.

One module per concern: ``rules`` (names, defaults, per-language defaults), ``text``
(normalisation, tokenisers), ``measure`` (set-based statistics of the four rule families over a
batch). :func:`score_batch` is what the clean stage runs on each bounded batch, possibly in a
worker process: it imports neither DuckDB nor Dagster.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dataset_platform.contracts.rules import (
    CJK_LANGUAGES,
    FAMILIES,
    LANGUAGE_DEFAULTS,
    RULES,
    STOP_WORDS_EN,
)
from dataset_platform.stages.clean.measure import Profile, measure
from dataset_platform.stages.clean.pii import PII_TYPES, redact_batch
from dataset_platform.stages.clean.text import normalise_array, normalise_text

__all__ = ["RULES", "FAMILIES", "ResolvedRule", "resolve", "score_batch", "normalise_text", "normalise_array", "SCORED_SCHEMA"]


@dataclass(frozen=True)
class ResolvedRule:
    name: str
    enabled: bool
    mode: str  # drop | annotate
    min: float | None
    max: float | None

    def fails(self, v: np.ndarray) -> np.ndarray:
        bad = np.zeros(v.shape, bool)
        with np.errstate(invalid="ignore"):
            if self.min is not None:
                bad |= v < self.min
            if self.max is not None:
                bad |= v > self.max
        return bad if self.enabled else np.zeros(v.shape, bool)


def _get(obj, field):
    return obj.get(field) if isinstance(obj, dict) else getattr(obj, field, None)


def _layers(settings, lang: str | None) -> list[tuple[str, object]]:
    """(key, override) pairs in precedence order (later wins)."""
    out: list[tuple[str, object]] = list((_get(settings, "rules") or {}).items())
    if lang is not None:
        out += list(LANGUAGE_DEFAULTS.get(lang, {}).items())
        out += list(((_get(settings, "languages_overrides") or {}).get(lang) or {}).items())
    return out


def resolve(settings, lang: str | None) -> tuple[Profile, dict[str, ResolvedRule]]:
    """The rules and measurement profile in force for documents of ``lang`` (None: the default)."""
    cur = {name: {"enabled": True, "mode": "drop", "min": r.min, "max": r.max} for name, r in RULES.items()}
    stop_words: list[str] = list(STOP_WORDS_EN)
    line_length = 30
    for key, ov in _layers(settings, lang):
        names = [n for n in RULES if n.startswith(key + ".")] if key in FAMILIES else [key]
        for name in names:
            for f in ("enabled", "mode", "min", "max"):
                v = _get(ov, f)
                if v is not None:
                    cur[name][f] = v
        if key == "gopher_quality.stop_words" and _get(ov, "words") is not None:
            stop_words = list(_get(ov, "words"))
        if key == "fineweb.short_line_ratio" and _get(ov, "line_length") is not None:
            line_length = int(_get(ov, "line_length"))
    rules = {name: ResolvedRule(name, **c) for name, c in cur.items()}
    c4_on = any(r.enabled for n, r in rules.items() if n.startswith("c4."))
    profile = Profile(
        lang=lang if lang in CJK_LANGUAGES else "en",
        cjk=lang in CJK_LANGUAGES,
        stop_words=tuple(stop_words),
        short_line_length=line_length,
        c4_enabled=c4_on,
    )
    return profile, rules


def profile_key(settings, lang: str | None) -> str | None:
    """Documents of languages without their own settings share the default profile (None)."""
    if lang in LANGUAGE_DEFAULTS or lang in (_get(settings, "languages_overrides") or {}):
        return lang
    return None


def _fmt(rule: str, v: float) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf"
    return str(int(v)) if RULES[rule].integer else f"{v:.4f}"


def _json_value(rule: str, v: float):
    if math.isnan(v) or math.isinf(v):
        return None
    return int(v) if RULES[rule].integer else round(float(v), 4)


SCORED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("n_words", pa.int64()),
        ("quality", pa.string()),
        ("annotations", pa.list_(pa.string())),
        ("rule", pa.string()),
        ("value", pa.string()),
        *[(f"pii_{t}", pa.int32()) for t in PII_TYPES],
    ]
)


def score_batch(batch: pa.RecordBatch, settings) -> pa.RecordBatch:
    """Normalise, measure and decide one batch (columns id, title, text, lang).

    Returns :data:`SCORED_SCHEMA`: the normalised text (or C4's view of it with
    ``c4_remove_lines``; NULL, like the title, for a rejected document), the word count, ``quality`` (JSON object rule -> value, keys sorted),
    ``annotations`` (annotate-only rules the document fails), the first drop rule it fails
    with its value (NULL when kept), and per PII type the spans found in a kept text (redacted
    with typed placeholders unless ``redact_pii`` is off).
    """
    ids = batch.column("id")
    langs = batch.column("lang").to_pylist()
    nfkc = bool(_get(settings, "nfkc_cjk"))
    texts = normalise_array(batch.column("text"), [nfkc and lang in CJK_LANGUAGES for lang in langs]).to_pylist()
    raw_titles = batch.column("title")
    titles = [t if r is not None else None for t, r in zip(normalise_array(raw_titles).to_pylist(), raw_titles.to_pylist())]
    n = len(texts)
    groups: dict[str | None, list[int]] = {}
    for i, lang in enumerate(langs):
        groups.setdefault(profile_key(settings, lang), []).append(i)

    out_text: list[str] = list(texts)
    n_words = np.zeros(n, np.int64)
    quality: list[str] = [""] * n
    annotations: list[list[str]] = [[] for _ in range(n)]
    rule_col: list[str | None] = [None] * n
    value_col: list[str | None] = [None] * n
    remove_lines = bool(_get(settings, "c4_remove_lines"))
    for key, idx in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        profile, rules = resolve(settings, key)
        values, views = measure([texts[i] for i in idx], profile)
        n_words[idx] = values["gopher_quality.word_count"].astype(np.int64)
        enabled = [r for r in rules.values() if r.enabled]
        fails = {r.name: r.fails(values[r.name]) for r in enabled}
        cols = {r.name: values[r.name].tolist() for r in enabled}
        for j, i in enumerate(idx):
            quality[i] = json.dumps(
                {name: _json_value(name, col[j]) for name, col in cols.items()}, sort_keys=True, separators=(",", ":")
            )
            for r in enabled:
                if fails[r.name][j]:
                    if r.mode == "annotate":
                        annotations[i].append(r.name)
                    elif rule_col[i] is None:
                        rule_col[i] = r.name
                        value_col[i] = _fmt(r.name, cols[r.name][j])
            if remove_lines and profile.c4_enabled:
                out_text[i] = views[j]
    # PII: found in the kept documents' text (counts per type) and replaced by typed placeholders
    # unless ``redact_pii`` is off; titles are redacted too (not counted). Rejected documents are
    # not redacted (rejected_documents holds no text).
    kept = [i for i in range(n) if rule_col[i] is None]
    pii_counts = {t: np.zeros(n, np.int32) for t in PII_TYPES}
    if kept:
        red, counts = redact_batch(pa.array([out_text[i] for i in kept], pa.string()))
        for t in PII_TYPES:
            pii_counts[t][kept] = counts[t].to_numpy(zero_copy_only=False)
        if _get(settings, "redact_pii") is not False:
            for i, v in zip(kept, red.to_pylist()):
                out_text[i] = v
            kept_titles = [i for i in kept if titles[i]]
            if kept_titles:
                red_t, _ = redact_batch(pa.array([titles[i] for i in kept_titles], pa.string()))
                for i, v in zip(kept_titles, red_t.to_pylist()):
                    titles[i] = v
    for i in range(n):  # a rejected document's text is not needed downstream (rejected_documents has none)
        if rule_col[i] is not None:
            out_text[i] = titles[i] = None
    return pa.RecordBatch.from_arrays(
        [
            ids.cast(pa.string()),
            pa.array(titles, pa.string()),
            pa.array(out_text, pa.string()),
            pa.array(n_words, pa.int64()),
            pa.array(quality, pa.string()),
            pa.array([sorted(a) for a in annotations], pa.list_(pa.string())),
            pa.array(rule_col, pa.string()),
            pa.array(value_col, pa.string()),
            *[pa.array(pii_counts[t], pa.int32()) for t in PII_TYPES],
        ],
        schema=SCORED_SCHEMA,
    )
