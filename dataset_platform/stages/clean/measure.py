"""Set-based measurement of every quality rule over one batch of normalised documents.

One call handles a list of texts of one language profile. Lines, paragraphs and words of the
whole batch are flattened into Arrow/numpy arrays (a document index per element); every statistic
is then a vectorised operation over the batch: string predicates with ``pyarrow.compute``,
duplicates by sorting (document, element id) keys, per-document sums with ``numpy.bincount``, and
n-grams as rolling 64-bit hashes of word ids. The only per-element Python is the tokeniser
(:func:`~dataset_platform.stages.clean.text.tokenize_lines`: a compiled regular expression once per
distinct space-separated chunk, or jieba's words per line for Chinese).

Semantics follow datatrove 0.10.1 (see rules.py); two documented differences:

* ``dup_<n>gram_char_frac`` counts the characters of every word covered by a repeated n-gram
  occurrence (the Gopher paper's definition: overlapping duplicates counted once); datatrove scans
  greedily and skips n words after each hit. Ours is >= datatrove's, equal in most documents.
* ``c4.sentences`` counts sentence ends (terminal punctuation followed by a word) per C4-kept line
  with a regular expression instead of spaCy's sentencizer; it only matters when a document has
  fewer than 5 kept lines (every kept line holds at least one sentence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataset_platform.contracts.rules import RULES, STOP_WORDS_EN
from dataset_platform.stages.clean.text import tokenize_lines

# datatrove.utils.text.PUNCTUATION_SET: a word made only of these is a "symbol word"
_PUNCT = "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»" + "".join(
    map(chr, (x for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b)))
)


#: Sentence-terminal punctuation of every script (the set FineWebQualityFilter uses, which follows
#: Unicode's Sentence_Terminal property; tests/test_rules.py compares it with datatrove's when that
#: is installed). Written out so that the rules never depend on which packages are installed.
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964"
    "\u0965\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803"
    "\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f"
    "\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb"
    "\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56"
    "\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048"
    "\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6"
    "\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b"
    "\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce"
    "\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7"
    "\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43"
    "\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e"
    "\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)


_TERMINAL = TERMINAL_PUNCTUATION
PUNCT_SET = frozenset(_PUNCT) | _TERMINAL
_CJK_TERMINAL = "。！？…"


def _class(chars) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(chars)) + "]"


_FW_TERMINAL_RE = _class(_TERMINAL) + "$"
_FW_TERMINAL_CJK_RE = _class(set(_TERMINAL) | set(_CJK_TERMINAL) | set("”」』）")) + "$"
_CITATION_RE = r"\[\d*\]|\[edit\]|\[citation needed\]"
_POLICY_RE = "terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies"
_ABBREV_RE = r"(?:\b\pL\.){2,}|\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Ltd|Co|Corp|Gov|Sen|Rep|Gen|Rev|vs|etc|No)\."
_SENT_END_RE = r"[.!?]+[\"'”’)\]]*\s+[\"'“‘(\[]*[\pL\pN]"
_SENT_END_CJK_RE = r"[。！？!?…]+[\"'”’」』)）]*\s*[^\s。！？!?…\"'”’」』)）]|[.]+[\"'”’)\]]*\s+[\pL\pN]"

_P = np.uint64(0x100000001B3)
_DOC_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Profile:
    """What measurement needs to know about a language."""

    lang: str = "en"
    cjk: bool = False
    stop_words: tuple[str, ...] = STOP_WORDS_EN
    short_line_length: int = 30
    c4_enabled: bool = True


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start of each group in sorted order, its size, its first position in ``keys``).

    numpy's default (SIMD quick) sort, not a stable one: the first position of a group is its
    minimum position, whatever order the sort leaves equal keys in."""
    order, starts, sizes = _sorted_groups(keys)
    first = np.minimum.reduceat(order, starts)
    return starts, sizes, first


def _sorted_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the sorting permutation of ``keys``, start of each group of equal keys in it, its size)."""
    order = np.argsort(keys)
    sk = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], sk[1:] != sk[:-1]]))
    sizes = np.diff(np.concatenate([starts, [sk.size]]))
    return order, starts, sizes


def _dup_mask(keys: np.ndarray, groups: tuple | None = None) -> np.ndarray:
    """True where the key already occurred earlier in the array (``groups``: its
    :func:`_sorted_groups`, when already computed)."""
    if keys.size == 0:
        return np.zeros(0, bool)
    order, starts, _ = groups if groups is not None else _sorted_groups(keys)
    first = np.minimum.reduceat(order, starts)
    dup = np.ones(keys.size, bool)
    dup[first] = False
    return dup


def _string_keys(strings: pa.Array, owner: np.ndarray) -> np.ndarray:
    ids = pc.dictionary_encode(strings).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return (owner.astype(np.int64) << 32) | ids


def _bincount(idx: np.ndarray, n: int, weights=None) -> np.ndarray:
    return np.bincount(idx, weights=weights, minlength=n).astype(np.float64)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _np(a) -> np.ndarray:
    return a.to_numpy(zero_copy_only=False)


def measure(texts: list[str], profile: Profile) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every rule's value for each text (normalised), and each text's C4 view (kept lines)."""
    n = len(texts)
    arr = pa.array(texts, pa.large_string())
    n_chars = _np(pc.utf8_length(arr)).astype(np.float64)
    out: dict[str, np.ndarray] = {}

    # ---- lines (text.split("\n"); normalised text has no other line breaks, lines are trimmed)
    lines_list = pc.split_pattern(arr, "\n")
    line_doc = _np(pc.list_parent_indices(lines_list))
    lines = lines_list.flatten()
    line_len = _np(pc.utf8_length(lines)).astype(np.float64)
    nonempty = line_len > 0
    n_lines_all = _bincount(line_doc, n)  # str.splitlines() keeps empty lines

    # ---- words, tokenised per line (so per-line word counts come for free)
    line_ntok, tok_id, vocab, line_chunks = tokenize_lines(lines, profile.lang)
    tok_line = np.repeat(np.arange(len(lines)), line_ntok)
    tok_doc = line_doc[tok_line] if tok_line.size else np.zeros(0, np.int64)
    stops = {w: i for i, w in enumerate(profile.stop_words)}
    v_symbol = np.fromiter((all(c in PUNCT_SET for c in w) for w in vocab), bool, len(vocab))
    v_alpha = np.fromiter((any(c.isalpha() for c in w) for w in vocab), bool, len(vocab))
    v_stop = np.fromiter((stops.get(w, -1) for w in vocab), np.int64, len(vocab))
    v_len = np.fromiter(map(len, vocab), np.float64, len(vocab))
    t_len = v_len[tok_id]
    t_symbol = v_symbol[tok_id]
    n_tok = _bincount(tok_doc, n)

    # ---- Gopher repetition: paragraphs, lines, n-grams
    paras_list = pc.split_pattern_regex(arr, r"\n{2,}")
    para_doc = _np(pc.list_parent_indices(paras_list))
    paras = paras_list.flatten()
    para_dup = _dup_mask(_string_keys(paras, para_doc))
    para_len = _np(pc.utf8_length(paras)).astype(np.float64)
    n_paras = _bincount(para_doc, n)
    out["gopher_repetition.dup_para_frac"] = _ratio(_bincount(para_doc[para_dup], n), n_paras)
    out["gopher_repetition.dup_para_char_frac"] = _ratio(_bincount(para_doc, n, para_len * para_dup), n_chars)
    ne_doc = line_doc[nonempty]
    ne_lines = lines.filter(pa.array(nonempty))
    line_dup_ne = _dup_mask(_string_keys(ne_lines, ne_doc))
    n_ne = _bincount(ne_doc, n)
    out["gopher_repetition.dup_line_frac"] = _ratio(_bincount(ne_doc[line_dup_ne], n), n_ne)
    out["gopher_repetition.dup_line_char_frac"] = _ratio(_bincount(ne_doc, n, line_len[nonempty] * line_dup_ne), n_chars)

    N = tok_id.size
    doc_start = np.concatenate([[0], np.cumsum(n_tok)]).astype(np.int64)
    pos = np.arange(N) - doc_start[tok_doc] if N else np.zeros(0, np.int64)
    remaining = n_tok[tok_doc].astype(np.int64) - pos  # words from here to the end of the document
    cl = np.concatenate([[0.0], np.cumsum(t_len)])
    h = np.zeros(N, np.uint64)
    ids = tok_id.astype(np.uint64) + np.uint64(1)
    mix = tok_doc.astype(np.uint64) * _DOC_MIX
    repeated5 = np.zeros(N, bool)  # set at k = 5, used from k = 6
    for k in range(1, 11):
        m = max(N - k + 1, 0)
        with np.errstate(over="ignore"):
            h[:m] = h[:m] * _P + ids[k - 1 : k - 1 + m]
        if k < 2:
            continue
        valid = np.flatnonzero(remaining >= k)
        if k > 5:
            # a k-gram that repeats starts with a 5-gram that repeats: only those positions can hold
            # a duplicate (same result, a much smaller sort)
            valid = valid[repeated5[valid]]
        keys = h[valid] ^ mix[valid]
        if k <= 4:
            value = np.zeros(n)
            if valid.size:
                _, counts, first_in_valid = _groups(keys)
                first = valid[first_in_valid]
                gdoc = tok_doc[first]
                maxc = np.zeros(n, np.int64)
                np.maximum.at(maxc, gdoc, counts)
                cand = counts == maxc[gdoc]
                best = np.full(n, N, np.int64)
                np.minimum.at(best, gdoc[cand], first[cand])
                has = best < N
                b = best[has]
                top_len = cl[b + k] - cl[b] + (k - 1)  # " ".join of the n-gram
                value[has] = top_len * maxc[has]
            out[f"gopher_repetition.top_{k}gram_char_frac"] = _ratio(value, n_chars)
        groups = None
        if k == 5 and valid.size:  # one sort serves the 5-gram duplicates and the positions for k > 5
            groups = _sorted_groups(keys)
            order, _, sizes = groups
            repeated5[valid[order]] = np.repeat(sizes, sizes) >= 2
        if k >= 5:
            dup_start = np.zeros(N + 1, np.int64)
            dup_start[1:][valid] = _dup_mask(keys, groups)
            cs = np.cumsum(dup_start)  # cs[i+1] = dup starts at positions <= i
            idx = np.arange(N)
            covered = (cs[idx + 1] - cs[np.maximum(idx + 1 - k, 0)]) > 0
            out[f"gopher_repetition.dup_{k}gram_char_frac"] = _ratio(_bincount(tok_doc, n, t_len * covered), n_chars)

    # ---- Gopher quality
    n_words = _bincount(tok_doc, n, ~t_symbol)
    out["gopher_quality.word_count"] = n_words
    out["gopher_quality.mean_word_length"] = np.where(
        n_words > 0, _bincount(tok_doc, n, t_len * ~t_symbol) / np.maximum(n_words, 1), np.nan
    )
    hashes = _np(pc.count_substring(arr, "#")).astype(np.float64)
    ellipses = _np(pc.count_substring(arr, "...")).astype(np.float64) + _np(pc.count_substring(arr, "…"))
    out["gopher_quality.hash_word_ratio"] = _ratio(hashes, n_tok)
    out["gopher_quality.ellipsis_word_ratio"] = _ratio(ellipses, n_tok)
    bullet = _np(pc.or_(pc.starts_with(lines, "•"), pc.starts_with(lines, "-")))
    end_ell = _np(pc.or_(pc.ends_with(lines, "..."), pc.ends_with(lines, "…")))
    out["gopher_quality.bullet_lines_ratio"] = _ratio(_bincount(line_doc, n, bullet), n_lines_all)
    out["gopher_quality.ellipsis_lines_ratio"] = _ratio(_bincount(line_doc, n, end_ell), n_lines_all)
    out["gopher_quality.alpha_words_ratio"] = _ratio(_bincount(tok_doc, n, v_alpha[tok_id]), n_tok)
    t_stop = v_stop[tok_id]
    is_stop = t_stop >= 0
    pairs = np.unique(tok_doc[is_stop].astype(np.int64) * 64 + t_stop[is_stop])
    out["gopher_quality.stop_words"] = _bincount(pairs // 64, n)

    # ---- C4 (per line; datatrove's order: long word, citations, terminal punctuation, >= 3 words,
    # lorem ipsum (drops the document), javascript (line), curly bracket (document), policy (line))
    clean = pc.replace_substring_regex(lines, _CITATION_RE, "")
    if profile.cjk:
        terminal = _np(pc.match_substring_regex(clean, r"[.?!\"'。！？…”」』]$"))
        n_line_words = line_ntok
    else:
        terminal = _np(pc.and_(pc.match_substring_regex(clean, r"[.?!\"']$"), pc.invert(pc.ends_with(clean, "..."))))
        # runs of non-space (RE2's \S+): the chunks between single spaces, when those are the only
        # whitespace in the lines
        n_line_words = line_chunks if line_chunks is not None else _np(pc.count_substring_regex(lines, r"\S+"))
    long_word = np.zeros(len(lines), bool)
    for i in np.flatnonzero(line_len > 1000).tolist():
        long_word[i] = any(len(w) > 1000 for w in lines[i].as_py().split())
    lower = pc.utf8_lower(clean)
    pre = ~long_word & terminal & (n_line_words >= 3)
    lorem = pre & _np(pc.match_substring(lower, "lorem ipsum"))
    js = pre & ~lorem & _np(pc.match_substring(lower, "javascript"))
    curly = pre & ~lorem & ~js & _np(pc.match_substring(clean, "{"))
    policy = pre & ~lorem & ~js & ~curly & _np(pc.match_substring_regex(lower, _POLICY_RE))
    kept = pre & ~lorem & ~js & ~curly & ~policy
    out["c4.lorem_ipsum"] = _bincount(line_doc, n, lorem)
    out["c4.curly_bracket"] = _bincount(line_doc, n, curly)
    kept_arr = pa.array(kept)
    kept_lines = clean.filter(kept_arr)
    kept_doc = line_doc[kept]
    no_abbrev = pc.replace_substring_regex(kept_lines, _ABBREV_RE, "X")
    ends = _np(pc.count_substring_regex(no_abbrev, _SENT_END_CJK_RE if profile.cjk else _SENT_END_RE))
    out["c4.sentences"] = _bincount(kept_doc, n, ends + 1)

    # ---- FineWeb: on the text C4 leaves (datatrove's chain), else on the whole text
    if profile.c4_enabled:
        fw_lines, fw_doc, fw_mask = kept_lines, kept_doc, kept
        fw_newlines = np.maximum(_bincount(kept_doc, n) - 1, 0)
    else:
        fw_lines, fw_doc, fw_mask = ne_lines, ne_doc, nonempty
        fw_newlines = n_lines_all - 1
    fw_len = _np(pc.utf8_length(fw_lines)).astype(np.float64)
    n_fw = _bincount(fw_doc, n)
    term_re = _FW_TERMINAL_CJK_RE if profile.cjk else _FW_TERMINAL_RE
    fw_term = _np(pc.match_substring_regex(fw_lines, term_re))
    out["fineweb.line_punct_ratio"] = _ratio(_bincount(fw_doc, n, fw_term), n_fw)
    out["fineweb.short_line_ratio"] = _ratio(_bincount(fw_doc, n, fw_len <= profile.short_line_length), n_fw)
    fw_dup = _dup_mask(_string_keys(fw_lines, fw_doc))
    out["fineweb.char_dup_ratio"] = _ratio(_bincount(fw_doc, n, fw_len * fw_dup), _bincount(fw_doc, n, fw_len))
    fw_words = _bincount(line_doc, n, line_ntok * fw_mask)
    out["fineweb.newline_ratio"] = np.where(fw_words > 0, fw_newlines / np.maximum(fw_words, 1), np.inf)

    views = ["\n".join(x).strip() for x in _split_by(kept_lines.to_pylist(), kept_doc, n)]
    missing = set(RULES) - set(out)
    assert not missing, missing
    return out, views


def _split_by(values: list, owner: np.ndarray, n: int) -> list[list]:
    groups: list[list] = [[] for _ in range(n)]
    for v, d in zip(values, owner.tolist()):
        groups[d].append(v)
    return groups
