"""Decoding HTML bodies whose declared encoding is missing or wrong.

Order of evidence (:func:`decode_html`):

1. a byte-order mark (UTF-8/16/32) - always right;
2. the declared encodings - the Content-Type ``charset`` and then ``<meta charset>`` /
   ``<meta http-equiv>`` / the XML declaration (WHATWG names via w3lib: ``iso-8859-1`` is
   ``cp1252``, ``gb2312``/``gbk`` are ``gb18030``...) - each used only if the body decodes with
   it WITHOUT errors; a declared single-byte encoding loses against a body that is valid,
   non-ASCII UTF-8 (the most common mislabel);
3. strict UTF-8;
4. Windows-1252 when the body reads as Western European text in it (:func:`looks_cp1252`: every
   non-ASCII character a Latin letter or typographic sign of that code page, and few of them next
   to each other), e.g. a Latin-1 page labelled UTF-8: statistical detection takes short French or
   German texts for Baltic or Central European code pages ("crème brûlée" read as cp1257 is
   "crčme brūlée");
5. statistical detection (charset-normalizer, among the encodings of the web), e.g. a GBK page
   labelled UTF-8 or not labelled;
6. the detected encoding, else the first declared one, else cp1252, with replacement characters.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
)

#: Bytes of the body searched for a <meta> declaration (w3lib reads the start of the document).
_SNIFF_BYTES = 4096
#: Encodings whose every byte sequence decodes: strict decoding proves nothing about them.
_SINGLE_BYTE_PREFIXES = ("cp", "iso8859", "latin", "windows", "koi8", "mac", "tis")
#: Bytes given to the statistical detector (it is slow on large inputs; pages are homogeneous).
_DETECT_BYTES = 64 * 1024
#: Candidates of the statistical detector: the encodings a web page can have (the WHATWG Encoding
#: Standard's list, as Python codecs). Without this, short pages come out as DOS or Mac code pages
#: (a KOI8-R page as Shift_JIS-2004, a windows-1252 line as cp1125...).
WEB_ENCODINGS = (
    "utf_8", "utf_16_le", "utf_16_be", "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256",
    "cp1257", "cp1258", "cp874", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7",
    "iso8859_8", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16", "koi8_r", "koi8_u",
    "cp866", "mac_roman", "mac_cyrillic", "gb18030", "gbk", "gb2312", "big5", "big5hkscs", "euc_jp",
    "iso2022_jp", "shift_jis", "cp932", "euc_kr", "cp949",
)
#: Detector answers widened to their superset (a GBK page often uses a few GB18030 characters).
_WIDEN = {"gb2312": "gb18030", "gbk": "gb18030", "big5": "big5hkscs", "shift_jis": "cp932", "euc_kr": "cp949"}


#: The non-ASCII characters of Western European text in Windows-1252 (French, German, Spanish,
#: Portuguese, Italian, Dutch, the Nordic languages): Latin-1 letters and the code page's
#: typographic signs. Bytes of other encodings read as cp1252 give others (Polish "ł" is "³",
#: "ą" is "¹") or come in runs (every byte of GBK, Big5, Shift_JIS or Cyrillic text is high).
_WESTERN = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿŒœŠšŸŽž"
    "‘’‚“”„–—…•€«»°·¡¿ºª§©®™£¥¢×\u00a0\u00ad"
)
#: at most this share of a Western text's non-ASCII characters stand next to another one
_RUN_SHARE = 0.25


def looks_cp1252(body: bytes) -> bool:
    """The body decodes as Windows-1252 into Western European text (see :data:`_WESTERN`)."""
    text = _strict(body, "cp1252")
    if text is None:
        return False
    high = [i for i, c in enumerate(text) if ord(c) > 127]
    if not high or any(text[i] not in _WESTERN for i in high):
        return False
    at = set(high)
    paired = sum(1 for i in high if i - 1 in at or i + 1 in at)
    return paired <= _RUN_SHARE * len(high)


def _norm(encoding: str | None) -> str | None:
    """Python codec name of an encoding label (WHATWG-resolved), None if unknown."""
    if not encoding:
        return None
    resolved = resolve_encoding(encoding) or encoding
    try:
        return codecs.lookup(resolved).name
    except LookupError:
        return None


def _single_byte(encoding: str) -> bool:
    return encoding.replace("-", "").replace("_", "").startswith(_SINGLE_BYTE_PREFIXES)


def _strict(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _wide_unicode(encoding: str) -> bool:
    return encoding.startswith(("utf-16", "utf-32", "utf_16", "utf_32"))


def detect_encoding(body: bytes) -> str | None:
    """The encoding charset-normalizer finds most plausible (widened to a superset), or None.

    UTF-16/32 answers are refused for a body without NUL bytes: such a body (e.g. a short
    windows-1252 text) decodes "without errors" as UTF-16 into nonsense, while real UTF-16/32
    markup is full of NULs (and usually starts with a BOM, handled before detection).
    """
    from charset_normalizer import from_bytes

    sample = body[:_DETECT_BYTES]
    for match in from_bytes(sample, cp_isolation=list(WEB_ENCODINGS)):
        enc = _norm(match.encoding)
        if enc is None or (_wide_unicode(enc) and b"\x00" not in sample):
            continue
        return _WIDEN.get(enc, enc)
    return None


def declared_encodings(body: bytes, content_type: str | None) -> list[str]:
    """Encodings declared by the Content-Type header and then by the document, deduplicated."""
    return list(_declared(body, content_type))


def _declared(body: bytes, content_type: str | None) -> Iterator[str]:
    """:func:`declared_encodings` one by one: the document is searched only if asked for more."""
    header = _norm(http_content_type_encoding(content_type)) if content_type else None
    if header:
        yield header
    document = _norm(html_body_declared_encoding(body[:_SNIFF_BYTES]))
    if document and document != header:
        yield document


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """(text, encoding) of an HTML body; ``content_type`` is the raw Content-Type header value."""
    bom_encoding, bom = read_bom(body)
    if bom_encoding:
        enc = _norm(bom_encoding) or "utf-8"
        return body[len(bom):].decode(enc, "replace"), enc
    declared: list[str] = []
    utf8: str | None = None
    for enc in _declared(body, content_type):  # the header's first: often the document's is not needed
        declared.append(enc)
        text = _strict(body, enc)
        if text is None:
            continue
        if _single_byte(enc) and not body.isascii():
            utf8 = _strict(body, "utf-8") if utf8 is None else utf8
            if utf8 is not None:
                return utf8, "utf-8"
        return text, enc
    text = _strict(body, "utf-8")
    if text is not None:
        return text, "utf-8"
    if looks_cp1252(body):
        return body.decode("cp1252"), "cp1252"
    detected = detect_encoding(body)
    if detected:
        text = _strict(body, detected)
        if text is not None:
            return text, detected
    fallback = detected or (declared[0] if declared else "cp1252")
    return body.decode(fallback, "replace"), fallback
