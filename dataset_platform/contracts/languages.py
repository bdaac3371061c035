"""The language codes a document can have (its ``lang`` column), as extraction gives them.

Extraction (``stages/extract.py``) detects the language with CLD2 and codes it with
:data:`CLD2_CODE_FIX` (CLD2's old or regional codes folded) and the part before any ``-``; a text
without a detected language gets ``und``. ``sources.yaml`` accepts only these codes in
``pipeline.clean.languages`` and ``languages_overrides`` (``config.py``): any other value would
never match a document.
"""

from __future__ import annotations

import functools

#: CLD2 code -> the code extraction records (tests/test_config.py holds stages/extract.py to it)
CLD2_CODE_FIX = {"zh-Hant": "zh", "un": "und", "iw": "he", "jw": "jv"}
#: the code of a text without a detected language
UNDETERMINED = "und"


def code_of(cld2_code: str) -> str:
    """The ``lang`` extraction records for a CLD2 code."""
    return CLD2_CODE_FIX.get(cld2_code, cld2_code).split("-")[0]


@functools.cache
def language_codes() -> dict[str, str]:
    """Every ``lang`` a document can have -> the language's name: the languages CLD2 detects, and
    ``und``."""
    import pycld2

    cld2_code = dict(pycld2.LANGUAGES)  # name -> CLD2's code
    out: dict[str, str] = {}
    for name in pycld2.DETECTED_LANGUAGES:
        out.setdefault(code_of(cld2_code[name]), name.capitalize())
    out[UNDETERMINED] = "no language detected"
    return out


@functools.cache
def language_names() -> dict[str, str]:
    """Lower-case language name (CLD2's, e.g. ``english``, ``chinese``) -> its code."""
    import pycld2

    codes = language_codes()
    names = {name.lower().replace("_", " "): code_of(code) for name, code in pycld2.LANGUAGES
             if code_of(code) in codes}
    names.update({name.lower(): code for code, name in codes.items()})
    return names
