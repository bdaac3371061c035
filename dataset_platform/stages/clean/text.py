"""Normalisation and tokenisation, per language.

Words, per language (what every word-based rule counts):

* default (Latin and other space-separated scripts): a regular expression that follows spaCy's
  English tokenizer, which datatrove uses: punctuation is its own word, clitics split off
  ("do" "n't", "it" "'s"), numbers keep their separators ("1,000", "3.5"), initials stay whole
  ("U.S."), "..." and "--" are one word;
* ``zh``: jieba's words (accurate mode, no HMM for new words: deterministic), through its Rust port
  jieba-rs (``rjieba``); whitespace dropped;
* ``ja``: one word per kana/ideograph, runs of Latin letters or digits as one word.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u200e\u200f\u2060\ufeff]")
_NEWLINES = re.compile(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANKS = re.compile(r"\n{3,}")
_TRIM_LINES = re.compile(r" ?\n ?")

_TITLES = (
    "Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Inc|Ltd|Co|Corp|Gov|Sen|Rep|Gen|Rev|Col|Capt|Lt|Sgt|vs|Jan|Feb|Mar|Apr|Jun|Jul|Aug"
    "|Sep|Sept|Oct|Nov|Dec|Mt"
)
EN_WORD = re.compile(
    # fast path, tried first: a run of letters that no later branch would treat differently (not
    # followed by a word character, '.', an apostrophe, '@', '+', ':', '-' or ',' + letter); the
    # same tokens as without it on our test and corpus lines, 1.5x faster
    r"[^\W\d_]+(?![\w.'’@+:-]|,[^\W_])"
    r"|https?://\S*[^\s.,;:!?)\]'\"]"  # URL
    r"|[\w.+-]+@\w[\w-]*(?:\.\w[\w-]*)+"  # e-mail address
    r"|(?:[^\W\d_]\.){2,}"  # initials: U.S., e.g., a.m.
    rf"|(?<![\w.])(?:{_TITLES})\.(?=\s|$)"  # abbreviations spaCy keeps whole
    r"|[^\W_]+?(?=n['’]t\b)|n['’]t\b"  # do n't, ca n't
    r"|[^\W_]+(?=['’](?:[sdmSDM]|re|ve|ll|RE|VE|LL)\b)|['’](?:[sdmSDM]|re|ve|ll|RE|VE|LL)\b"  # it 's, we 're
    r"|\d+(?:[.,]\d+)*(?=(?:km|cm|mm|m|kg|mg|g|lb|oz|ft|mph|kmh|kb|mb|gb|tb|KB|MB|GB|TB|am|pm|K|M|G|T)\b)"  # 600 m
    r"|[^\W_]+(?:[.,:'’][^\W_]+)*"  # words, numbers (1,000 3.5 10:30), O'Neill
    r"|\.{2,}|-{2,}"
    r"|\S"
)
_JA_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]|[^\W_]+|\S")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


_FTFY_CONFIG = None


def _ftfy_config():
    """Repair encodings only: mojibake, C1 controls, surrogates, terminal escapes, HTML entities.
    Width folding, quote uncurling and ligature splitting stay off (they change correct text: CJK
    text keeps its full-width punctuation unless ``nfkc`` is asked for), as in datatrove's formatter."""
    global _FTFY_CONFIG
    if _FTFY_CONFIG is None:
        from ftfy import TextFixerConfig

        _FTFY_CONFIG = TextFixerConfig(
            fix_latin_ligatures=False, fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
            normalization="NFC",
        )
    return _FTFY_CONFIG


_FTFY_TRIGGER = None


def _needs_ftfy(text: str) -> bool:
    """False when ftfy's repair (our config) would change nothing but NFC: no mojibake (ftfy's own
    badness test over the whole text: its per-line encoding fix only acts on bad lines), and none
    of the characters its other fixers act on (entities, C1 and control characters, escapes,
    surrogates). One regex search each instead of ftfy's per-line passes (about 3x faster on news)."""
    global _FTFY_TRIGGER
    if _FTFY_TRIGGER is None:
        from ftfy.chardata import CONTROL_CHARS

        chars = {"\x1b", *map(chr, range(0x80, 0xA0)), *map(chr, CONTROL_CHARS)}
        cls = "".join(f"\\u{ord(c):04x}" for c in sorted(chars))
        # an HTML entity as ftfy's unescape_html finds them, or a character a fixer acts on
        _FTFY_TRIGGER = re.compile(f"&#?[0-9A-Za-z]{{1,24}};|[{cls}\\ud800-\\udfff]")
    if _FTFY_TRIGGER.search(text):
        return True
    if text.isascii():  # no mojibake in ASCII
        return False
    from ftfy.badness import is_bad

    return is_bad(text)


# ---- the same normalisation over a whole Arrow array (RE2 in C++; ftfy only where it can act)

_PY_SPACE = "\t\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _re2(py_class: str) -> str:
    """A Python character-class body with \\xNN / \\uNNNN escapes, in RE2's \\x{...} syntax."""
    return re.sub(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))", lambda m: "\\x{%s}" % (m.group(1) or m.group(2)), py_class)


_RE2_NEWLINES = _re2(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_RE2_CONTROL = _re2(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u200e\u200f\u2060\ufeff]")


def _re2_chars(chars: str) -> str:
    """Characters (some unprintable) as the body of an RE2 character class."""
    return _re2(chars.encode("unicode_escape").decode("ascii").replace("\\\\", "\\"))


_RE2_SPACE_CLASS = _re2_chars(_PY_SPACE)
_RE2_OTHER_SPACE_CLASS = _re2_chars(_PY_SPACE.replace(" ", ""))
#: a run of whitespace that is not already one plain space (what becomes one space): replacing
#: every run, single spaces included, made this 8x slower (a match per word)
_RE2_SPACES = f"[{_RE2_SPACE_CLASS}]{{2,}}|[{_RE2_OTHER_SPACE_CLASS}]"
_BADNESS_RE2: str | None = None


def _verbose_to_plain(pattern: str) -> str:
    """A re.VERBOSE pattern without its insignificant whitespace and comments (classes kept)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            out.append(c)
            in_class = c != "]"
        elif c == "[":
            in_class = True
            out.append(c)
            if pattern[i + 1 : i + 2] == "]":  # a literal ']' first in the class
                out.append("]")
                i += 1
        elif c == "#":
            j = pattern.find("\n", i)
            i = len(pattern) if j < 0 else j
            continue
        elif not c.isspace():
            out.append(c)
        i += 1
    return "".join(out)


def _badness_re2() -> str | None:
    """ftfy's mojibake detector (``ftfy.badness.BADNESS_RE``) as an RE2 pattern, checked against
    ftfy itself on known strings; None if it cannot be converted (then ftfy's own test is used)."""
    global _BADNESS_RE2
    if _BADNESS_RE2 is None:
        import pyarrow as pa
        import pyarrow.compute as pc
        from ftfy.badness import BADNESS_RE, is_bad

        probes = ["cafÃ© au lait", "plain café", "“quoted” – fine", "naÃ¯ve", "â€” dash", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚",
                  "привет мир", "ĂŠ", "ordinary text", "Ã©tÃ© Â£5", "日本語のテキスト"]
        try:
            pat = _verbose_to_plain(BADNESS_RE.pattern) if BADNESS_RE.flags & re.VERBOSE else BADNESS_RE.pattern
            got = pc.match_substring_regex(pa.array(probes), pat).to_pylist()
            _BADNESS_RE2 = pat if got == [bool(is_bad(p)) for p in probes] else ""
        except Exception:  # pragma: no cover - a future ftfy pattern RE2 cannot parse
            _BADNESS_RE2 = ""
    return _BADNESS_RE2 or None


def normalise_array(texts, nfkc=None):
    """:func:`normalise_text` over an Arrow string array (nulls become ""), set-based: which texts
    ftfy could change is decided with RE2 over the whole array (its own mojibake test, converted),
    ftfy runs on those only, then NFC / NFKC and every whitespace rule are Arrow kernels.
    ``nfkc``: a boolean mask (numpy or list) of the texts to fold with NFKC. Returns a string array."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr.cast(pa.string()), "")
    needs = _ftfy_may_act(arr)
    if needs is not None:
        idx = np.flatnonzero(needs)
    else:  # pragma: no cover - fall back to ftfy's own test per text
        vals = arr.to_pylist()
        idx = np.array([i for i, t in enumerate(vals) if t and _needs_ftfy(t)], np.int64)
    if idx.size:
        mask = np.zeros(len(arr), bool)
        mask[idx] = True
        arr = pc.replace_with_mask(arr, pa.array(mask), _ftfy_by_line(arr.take(pa.array(idx))))
    arr = pc.utf8_normalize(arr, "NFC")
    if nfkc is not None:
        mask = np.asarray(nfkc, bool)
        if mask.any():
            arr = pc.if_else(pa.array(mask), pc.utf8_normalize(arr, "NFKC"), arr)
    arr = pc.replace_substring_regex(arr, _RE2_NEWLINES, "\n")
    arr = pc.replace_substring_regex(arr, _RE2_CONTROL, "")
    arr = pc.replace_substring_regex(arr, _RE2_SPACES, " ")
    arr = pc.replace_substring_regex(arr, r" ?\n ?", "\n")
    arr = pc.replace_substring_regex(arr, r"\n{3,}", "\n\n")
    return pc.utf8_trim(arr, " \n")


def _ftfy_may_act(arr):
    """Per string of ``arr``: could ftfy's repair (our config) change more than NFC? RE2 over the
    array: an HTML entity, a character a fixer acts on, or ftfy's own mojibake test (converted).
    None when that test cannot be converted (then ftfy's own test must be used)."""
    import pyarrow.compute as pc

    bad_re = _badness_re2()
    if bad_re is None:  # pragma: no cover - a future ftfy pattern RE2 cannot parse
        return None
    trigger = pc.match_substring_regex(arr, r"&#?[0-9A-Za-z]{1,24};|" + _re2(
        "[\\x1b\\x80-\\x9f" + "".join(f"\\u{c:04x}" for c in _control_chars()) + "]"))
    return pc.or_(trigger, pc.match_substring_regex(arr, bad_re)).to_numpy(zero_copy_only=False)


def _ftfy_by_line(texts):
    """``ftfy.fix_text`` over a string array (no nulls), equal to it up to NFC (which the caller
    applies to every text), repairing only the lines ftfy could change.

    ftfy fixes a text line by line (a line with its newline is one segment), and from the first
    segment that holds a "<" on it stops unescaping HTML entities; that state is kept here. Every
    other line would come back only NFC-normalised. Which lines: :func:`_ftfy_may_act` over all the
    lines at once (on the line and on the line with its newline, so no match is missed). News with
    entities has about 1.5 such lines in 26: ftfy over whole texts took 0.58 ms per such document.
    A text with a line over ftfy's segment length goes to ftfy whole."""
    import ftfy
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    cfg = _ftfy_config()
    split = pc.split_pattern(texts, "\n")
    lines = split.flatten()
    doc = split.value_parent_indices().to_numpy(zero_copy_only=False)
    n_lines = len(lines)
    is_last = np.zeros(n_lines, bool)
    offsets = split.offsets.to_numpy(zero_copy_only=False)
    is_last[offsets[1:][np.diff(offsets) > 0] - 1] = True
    with_nl = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")
    may = _ftfy_may_act(lines)
    may = may | _ftfy_may_act(with_nl) if may is not None else None
    if may is None:  # pragma: no cover
        return pa.array([ftfy.fix_text(t, cfg) for t in texts.to_pylist()], pa.string())
    lengths = pc.utf8_length(lines).to_numpy(zero_copy_only=False)
    whole = np.zeros(len(texts), bool)
    whole[np.unique(doc[lengths >= cfg.max_decode_length - 1])] = True
    # "<" seen in this text up to and including this line: unescape_html is off from there on
    lt = pc.match_substring(lines, "<").to_numpy(zero_copy_only=False).astype(np.int64)
    cs = np.cumsum(lt)
    lt_so_far = (cs - (cs - lt)[offsets[:-1]][doc]) > 0 if n_lines else np.zeros(0, bool)
    fix = np.flatnonzero(may & ~whole[doc] & (lengths > 0))  # "" and "\n" come back as they are
    off = cfg._replace(unescape_html=False) if cfg.unescape_html == "auto" else cfg
    fixed = []
    for j, line in zip(fix.tolist(), lines.take(pa.array(fix, pa.int64())).to_pylist()):
        c = off if lt_so_far[j] else cfg
        if is_last[j]:
            fixed.append(ftfy.fix_and_explain(line, c)[0])
        else:
            out = ftfy.fix_and_explain(line + "\n", c)[0]
            if not out.endswith("\n"):  # pragma: no cover - ftfy never touches "\n" with our config
                whole[doc[j]] = True
            fixed.append(out[:-1] if out.endswith("\n") else out)
    mask = np.zeros(n_lines, bool)
    mask[fix] = True
    lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(fixed, pa.string())) if fix.size else lines
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), lines), "\n")
    if whole.any():
        w = np.flatnonzero(whole)
        redo = pa.array([ftfy.fix_text(t, cfg) for t in texts.take(pa.array(w)).to_pylist()], pa.string())
        joined = pc.replace_with_mask(joined, pa.array(whole), redo)
    return joined


def _control_chars() -> list[int]:
    from ftfy.chardata import CONTROL_CHARS

    return sorted(CONTROL_CHARS)


def normalise_text(text: str, *, nfkc: bool = False) -> str:
    """ftfy repair (encodings only, NFC), one newline convention, no control characters, single
    spaces, trimmed lines, at most one blank line in a row; NFKC on request (full-width forms folded)."""
    if not text:
        return ""
    if _needs_ftfy(text):
        import ftfy

        text = ftfy.fix_text(text, _ftfy_config())
    elif not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    text = _NEWLINES.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _TRIM_LINES.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip()


def is_cjk_text(text: str) -> bool:
    return _CJK.search(text) is not None


_ZH_CUT = None


def _zh_cut():
    """jieba's words through jieba-rs (rjieba): the same dictionary and the same DAG search as
    jieba's accurate mode without HMM, in Rust. Its words equal jieba 0.42.1's on every line of the
    shared corpus's Chinese texts and on random mixed-script strings (tests/test_rules.py),
    at 12x the speed: jieba was 93 % of the time of scoring a Chinese document."""
    global _ZH_CUT
    if _ZH_CUT is None:
        import rjieba  # loads its dictionary on import (0.1 s; jieba took 0.8 s)

        _ZH_CUT = rjieba.cut
    return _ZH_CUT


def tokenizer(lang: str):
    """Function line -> list of words for ``lang`` (see the module docstring)."""
    if lang == "zh":
        cut = _zh_cut()

        def zh(line: str) -> list[str]:
            return [w for w in cut(line, False) if not w.isspace()]

        return zh
    if lang == "ja":
        return _JA_WORD.findall
    return EN_WORD.findall


#: any whitespace but the plain space (Python's ``str.isspace`` characters, as RE2)
_RE2_OTHER_SPACE = f"[{_RE2_OTHER_SPACE_CLASS}\\n]"


def tokenize_lines(lines, lang: str):
    """The words of every line of an Arrow string array (no newlines in a line), as
    (words per line, each word's id in ``vocab``, ``vocab``, space-separated chunks per line or
    None when not counted); ids follow first occurrence.

    Space-separated scripts: no word pattern crosses whitespace or looks past it differently from
    a string's end, so a line's words are the words of its space-separated chunks, in order. Each
    distinct chunk is tokenised once (in the default pattern a chunk of letters only is one word,
    as its first branch says), and the words of every occurrence are gathered with numpy: news repeats its
    chunks, 5.2 M words in 10 000 documents came from far fewer distinct chunks. Lines holding
    other whitespace than single spaces (never after :func:`normalise_array`) go line by line."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    tok = tokenizer(lang)
    n_lines = len(lines)
    if lang == "zh" or (n_lines and pc.any(pc.match_substring_regex(lines, _RE2_OTHER_SPACE)).as_py()):
        per_line = [tok(ln) if ln else [] for ln in lines.to_pylist()]
        line_ntok = np.fromiter(map(len, per_line), np.int64, n_lines)
        enc = pc.dictionary_encode(pa.array([w for ws in per_line for w in ws], pa.string()))
        return line_ntok, enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist(), None
    split = pc.split_pattern(lines, " ")
    chunk_line = split.value_parent_indices().to_numpy(zero_copy_only=False)
    chunks = split.flatten()
    if len(chunks):
        keep = pc.greater(pc.binary_length(chunks), 0)
        chunks, chunk_line = chunks.filter(keep), chunk_line[keep.to_numpy(zero_copy_only=False)]
    enc = pc.dictionary_encode(chunks)
    chunk_id = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if lang != "ja":  # the default pattern (zh went above): a chunk of letters only is one word
        per_chunk = [[c] if c.isalpha() else tok(c) for c in enc.dictionary.to_pylist()]
    else:
        per_chunk = [tok(c) for c in enc.dictionary.to_pylist()]
    counts = np.fromiter(map(len, per_chunk), np.int64, len(per_chunk))
    words = pc.dictionary_encode(pa.array([w for ws in per_chunk for w in ws], pa.string()))
    word_id = words.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    occ = counts[chunk_id]  # words of each chunk occurrence
    total = int(occ.sum())
    occ_start = np.repeat(np.cumsum(occ) - occ, occ)
    gather = np.repeat(starts[chunk_id], occ) + (np.arange(total, dtype=np.int64) - occ_start)
    tok_id = word_id[gather] if total else np.zeros(0, np.int64)
    line_ntok = np.bincount(chunk_line, weights=occ, minlength=n_lines).astype(np.int64)
    # the distinct chunks are in order of first occurrence, so their words are too: the ids are
    # those of encoding every word in order
    line_chunks = np.bincount(chunk_line, minlength=n_lines).astype(np.int64)
    return line_ntok, tok_id, words.dictionary.to_pylist(), line_chunks
