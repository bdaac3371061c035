"""The registry of quality rules: names, families, what each measures, and default thresholds.

A rule is named ``<family>.<rule>`` (the name recorded in ``rejected_documents.rule`` and used as
the key of ``cleaned_documents.quality``). A document fails a rule when its measured value is
below ``min`` or above ``max``. English defaults are exactly those of datatrove 0.10.1's
``GopherRepetitionFilter``, ``GopherQualityFilter``, ``C4QualityFilter`` and
``FineWebQualityFilter``; :data:`LANGUAGE_DEFAULTS` adapts some of them to Chinese and Japanese.

This module imports nothing from the rest of the package (the config models validate against it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    name: str
    measures: str
    min: float | None = None
    max: float | None = None
    integer: bool = False  # value is a count (recorded without decimals)


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.name: r for r in rules}


# In evaluation order: the first failing rule names a rejection (datatrove's filter order:
# Gopher repetition, Gopher quality, C4, FineWeb).
RULES: dict[str, Rule] = _rules(
    Rule("gopher_repetition.dup_para_frac", "paragraphs (split on blank lines) that repeat an earlier one / paragraphs", max=0.30),
    Rule("gopher_repetition.dup_para_char_frac", "characters of repeated paragraphs / characters", max=0.20),
    Rule("gopher_repetition.dup_line_frac", "lines that repeat an earlier line / lines", max=0.30),
    Rule("gopher_repetition.dup_line_char_frac", "characters of repeated lines / characters", max=0.20),
    Rule("gopher_repetition.top_2gram_char_frac", "characters of the most frequent word 2-gram x its count / characters", max=0.20),
    Rule("gopher_repetition.top_3gram_char_frac", "as top_2gram, 3-grams", max=0.18),
    Rule("gopher_repetition.top_4gram_char_frac", "as top_2gram, 4-grams", max=0.16),
    Rule("gopher_repetition.dup_5gram_char_frac", "characters of words inside a repeated word 5-gram / characters", max=0.15),
    Rule("gopher_repetition.dup_6gram_char_frac", "as dup_5gram, 6-grams", max=0.14),
    Rule("gopher_repetition.dup_7gram_char_frac", "as dup_5gram, 7-grams", max=0.13),
    Rule("gopher_repetition.dup_8gram_char_frac", "as dup_5gram, 8-grams", max=0.12),
    Rule("gopher_repetition.dup_9gram_char_frac", "as dup_5gram, 9-grams", max=0.11),
    Rule("gopher_repetition.dup_10gram_char_frac", "as dup_5gram, 10-grams", max=0.10),
    Rule("gopher_quality.word_count", "words that are not only punctuation", min=50, max=100_000, integer=True),
    Rule("gopher_quality.mean_word_length", "mean characters per word (punctuation-only words excluded)", min=3, max=10),
    Rule("gopher_quality.hash_word_ratio", "'#' characters / words", max=0.1),
    Rule("gopher_quality.ellipsis_word_ratio", "'...' and '…' / words", max=0.1),
    Rule("gopher_quality.bullet_lines_ratio", "lines starting with '•' or '-' / lines", max=0.9),
    Rule("gopher_quality.ellipsis_lines_ratio", "lines ending with '...' or '…' / lines", max=0.3),
    Rule("gopher_quality.alpha_words_ratio", "words with at least one alphabetic character / words", min=0.8),
    Rule("gopher_quality.stop_words", "distinct stop words present (the, be, to, of, and, that, have, with)", min=2, integer=True),
    Rule("c4.lorem_ipsum", "C4-kept lines containing 'lorem ipsum'", max=0, integer=True),
    Rule("c4.curly_bracket", "C4-kept lines containing '{'", max=0, integer=True),
    Rule("c4.sentences", "sentences in the lines C4 keeps (terminal punctuation, >= 3 words, no javascript/policy)", min=5, integer=True),
    Rule("fineweb.line_punct_ratio", "lines ending in terminal punctuation / lines", min=0.12),
    Rule("fineweb.short_line_ratio", "lines of at most 30 characters / lines", max=0.67),
    Rule("fineweb.char_dup_ratio", "characters of repeated lines / characters (newlines excluded)", max=0.01),
    Rule("fineweb.newline_ratio", "newlines / words", max=0.3),
)

FAMILIES = ("gopher_repetition", "gopher_quality", "c4", "fineweb")

#: Gopher's stop words (English). Matched case-sensitively on words, as datatrove does.
STOP_WORDS_EN = ("the", "be", "to", "of", "and", "that", "have", "with")
#: Frequent function words; jieba keeps each as one word.
STOP_WORDS_ZH = ("的", "了", "是", "在", "和", "有", "也", "不", "这", "就", "都", "与")
#: Frequent particles; Japanese is measured per character.
STOP_WORDS_JA = ("の", "に", "は", "を", "た", "が", "で", "て", "と", "し")

#: Built-in per-language settings, applied before the user's ``languages_overrides``.
#: Chinese words come from jieba (mean ~1.6 characters, punctuation separate); Japanese "words" are
#: characters. A CJK line of 12 characters carries about what 30 Latin characters do.
LANGUAGE_DEFAULTS: dict[str, dict[str, dict]] = {
    "zh": {
        "gopher_quality.mean_word_length": {"min": 1.0, "max": 4.0},
        "gopher_quality.alpha_words_ratio": {"min": 0.65},
        "gopher_quality.stop_words": {"words": list(STOP_WORDS_ZH)},
        "fineweb.short_line_ratio": {"line_length": 12},
    },
    "ja": {
        "gopher_quality.word_count": {"min": 100},
        "gopher_quality.mean_word_length": {"enabled": False},
        "gopher_quality.alpha_words_ratio": {"min": 0.65},
        "gopher_quality.stop_words": {"words": list(STOP_WORDS_JA)},
        "fineweb.short_line_ratio": {"line_length": 12},
    },
}
#: Languages whose text is not split on whitespace (CJK terminal punctuation, tokenised lines in C4).
CJK_LANGUAGES = ("zh", "ja")


@dataclass(frozen=True)
class DropRule:
    """A rule of a stage other than clean that drops a document, with what its value holds."""

    name: str
    stage: str
    measures: str
    value: str


#: The blocklist rules of the extract stage (``pipeline.extract.blocklist``, stages/blocklist.py),
#: recorded in ``rejected_documents`` with stage ``extract``. They drop only: annotating would need
#: a column of extracted_documents to record the match in, and that layer has none (a family can be
#: switched off instead: no lists, ``default_words: false``).
BLOCKLIST_RULES: dict[str, DropRule] = {r.name: r for r in (
    DropRule("blocklist.domain", "extract", "the page's host is a listed domain or a subdomain of one",
             "the listed domain"),
    DropRule("blocklist.url", "extract", "the page's URL (host + path, without scheme) starts with a listed URL "
             "prefix, at a path boundary", "the listed URL prefix"),
    DropRule("blocklist.words", "extract", "banned-word occurrences in the title and text, at least min_word_hits "
             "of min_distinct_words entries and min_hits_per_1000_chars",
             "'<hits> hits (<per 1000 chars> per 1000 chars): <entries found>'"),
)}
