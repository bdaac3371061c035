"""Normalisation and tokenisation, per language.

Words, per language (what every word-based rule counts):

* default (Latin and other space-separated scripts): a regular expression that follows spaCy's
  English tokenizer, which datatrove uses: punctuation is its own word, clitics split off
  ("do" "n't", "it" "'s"), numbers keep their separators ("1,000", "3.5"), initials stay whole
  ("U.S."), "..." and "--" are one word;
* ``zh``: jieba (accurate mode, no HMM for new words: deterministic and fast); whitespace dropped;
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
_RE2_SPACES = "[" + _re2(_PY_SPACE.encode("unicode_escape").decode("ascii").replace("\\\\", "\\")) + "]+"
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
    trigger = pc.match_substring_regex(arr, r"&#?[0-9A-Za-z]{1,24};|" + _re2(
        "[\\x1b\\x80-\\x9f" + "".join(f"\\u{c:04x}" for c in _control_chars()) + "]"))
    bad_re = _badness_re2()
    if bad_re is not None:
        needs = pc.or_(trigger, pc.match_substring_regex(arr, bad_re))
        idx = np.flatnonzero(needs.to_numpy(zero_copy_only=False))
    else:  # pragma: no cover - fall back to ftfy's own test per text
        vals = arr.to_pylist()
        idx = np.array([i for i, t in enumerate(vals) if t and _needs_ftfy(t)], np.int64)
    if idx.size:
        import ftfy

        vals = arr.to_pylist()
        cfg = _ftfy_config()
        for i in idx.tolist():
            vals[i] = ftfy.fix_text(vals[i], cfg)
        arr = pa.array(vals, pa.string())
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


_jieba = None


def _jieba_tokenizer():
    global _jieba
    if _jieba is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        tok = jieba.Tokenizer()
        tok.initialize()
        _jieba = tok
    return _jieba


def tokenizer(lang: str):
    """Function line -> list of words for ``lang`` (see the module docstring)."""
    if lang == "zh":
        tok = _jieba_tokenizer()

        def zh(line: str) -> list[str]:
            return [w for w in tok.lcut(line, HMM=False) if not w.isspace()]

        return zh
    if lang == "ja":
        return _JA_WORD.findall
    return EN_WORD.findall
