"""Structured PII: find and redact e-mail addresses, phone numbers, IP addresses, payment cards,
IBANs and Chinese resident ID numbers.

Plain library (no Dagster). Each type has a compiled candidate pattern and a validator. On a
batch (:func:`redact_batch`, :func:`find_pii_batch`, :func:`count_pii`) one vectorised RE2 pass
per type (``pyarrow.compute``, :data:`PREFILTERS`) first tells which rows can hold that type at
all; only those rows are scanned for it in Python:

* ``email``  -- ``local@domain.tld`` (ASCII local part, dotted domain, alphabetic TLD);
* ``phone``  -- accepted when one of these holds (see :func:`_phone_ok`):
  international form (``+CC`` or ``00CC``) that the ``phonenumbers`` metadata says is valid (or
  at least possible); a mainland-China mobile ``1[3-9]x xxxx xxxx`` (optionally ``+86``/``86``,
  spaces or dashes); a national number written with its trunk ``0`` or as ``(area) xxx-xxxx`` that
  is valid for one of :data:`NATIONAL_REGIONS`; a country code without ``+`` followed by a
  separator (``852-2335 2385``) valid with the ``+``; a ``NNN-NNNN`` local number; or any 7-15
  digit number right after a phone word (``Phone:``, ``call``, ``电话``, ``联系`` ...) or before one
  (``office``, ``fax``, ``mobile``). An extension right after the number (``x4587``, ``ext. 12``,
  ``分机123``, ``转8021``, ``010-6552 9988-8021``) is part of its span; an area code in full-width
  parentheses (``（010）6552 9988``) is read as in ASCII ones; mobiles listed with ``/`` are each
  found. Dates, times, versions, decimals, prices, numbers inside URLs, numbers glued to a product
  code suffix (``-A``) and numbers after order / invoice / QQ / ZIP / product / model words are refused;
* ``ip``     -- IPv4 and IPv6, validated with :mod:`ipaddress` (no leading zeros; a dotted quad
  after ``v`` / ``version`` / ``版本`` is a version number, not an address);
* ``card``   -- 13-19 digits contiguous, or 12-19 digits in groups of 4 (4-4-4 to 4-4-4-4-3) or 4-6-5
  with one kind of separator; issuer prefix and length of a card scheme in use (:func:`_iin_ok`:
  12 digits only for Maestro prefixes), Luhn-valid;
* ``iban``   -- country code, two check digits, country-specific length, ISO 13616 mod-97 == 1,
  optional spaces in groups of four;
* ``cn_id``  -- 18-character resident ID: province code, a real date of birth (1900-2099), GB 11643
  (ISO 7064 MOD 11-2) check character including ``X``.

When spans of several types overlap, the first in :data:`PRIORITY` wins. Placeholders contain no
digit, ``@``, ``:`` or ``.``; and :func:`find_pii` repeats the search on the redacted text until it
finds nothing more, so ``find_pii(redact(t)[0]) == []`` always holds (what the blocking check on
cleaned_documents relies on). Offsets are Python string indices (code points).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

PII_TYPES: tuple[str, ...] = ("email", "phone", "ip", "card", "iban", "cn_id")
PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP_ADDRESS>",
    "card": "<CARD>",
    "iban": "<IBAN>",
    "cn_id": "<CN_ID>",
}
#: overlap resolution: a span of an earlier type wins over an overlapping later one
PRIORITY: tuple[str, ...] = ("email", "iban", "cn_id", "card", "ip", "phone")
_RANK = {t: i for i, t in enumerate(PRIORITY)}


@dataclass(frozen=True)
class PiiSpan:
    type: str
    start: int  # offsets into the input text, end exclusive
    end: int


# --------------------------------------------------------------------------- patterns

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
_IPV4 = re.compile(r"\d(?<![A-Za-z0-9_.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![A-Za-z0-9_]|\.\d)")
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![A-Za-z0-9_:]|\.[A-Za-z0-9])"
)
_CARD = re.compile(
    r"\d(?<![A-Za-z0-9_\-.+]\d)\d{3}(?:\d{9,15}|([ \-])(?:\d{4}\1\d{4}(?:\1\d{4}\1\d{1,3}|\1\d{1,7})?|\d{6}\1\d{4,5}))"
    r"(?![A-Za-z0-9_]|[\-.]\d)"
)
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![a-z0-9])")
_CN_ID = re.compile(
    r"[1-9](?<![A-Za-z0-9][1-9])\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![A-Za-z0-9])"
)
# a run of phone characters: optional + or (, digits with single separators (space, dash, dot,
# parentheses, "(0)"); at least 7 characters; judged by _phone_ok
_PHONE = re.compile(
    r"(?:\+|\()?\d(?:[\d]|[ \u00a0\-.](?=[\d(])|\)[ \u00a0\-]?(?=\d)|[ \u00a0]?\((?=\d)){6,}(?<=\d)"
)
_DIGIT = re.compile(r"\d")
_NON_DIGITS = re.compile(r"\D+")
_LEADING_DIGITS = re.compile(r"\d+")
_GROUP_GAP = re.compile(r"[ \u00a0]+")
_ALL = frozenset(PII_TYPES)
_NONE: frozenset[str] = frozenset()
_EMAIL_ONLY = frozenset({"email"})
_NO_EMAIL = _ALL - _EMAIL_ONLY
#: RE2 patterns (pyarrow.compute, vectorised over a batch), each a superset of what its type's
#: candidate pattern can match: a row without a hit is not scanned for that type at all
PREFILTERS: dict[str, str] = {
    "email": r"@",
    "phone": r"\d(?:[ \x{00a0}\-.()（）]{0,3}\d){6}",
    "ip": r"\d\.\d{1,3}\.\d{1,3}\.\d|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    "card": r"\d{13}|\d{4}[ \-]\d{4}[ \-]\d{4}|\d{4}[ \-]\d{6}[ \-]\d{4}",
    "iban": r"[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
    "cn_id": r"\d{17}[\dXx]",
}
_URL_BODY = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&*+;=%]+")
# a superset of every _PHONE candidate from its first digit on: scanned first, as it is ~5x faster
_PHONE_RUN = re.compile(r"\d[\d \u00a0\-.()]{5,}\d")

#: an extension right after a phone number, part of its span: ``x4587``, ``x 12``, ``ext. 12``,
#: ``extension 22``, ``分机123``, ``转8021`` (1-6 digits, then no further digit or letter)
_EXT = re.compile(
    r"[ \u00a0]*,?[ \u00a0]*(?:(?P<x>x)|ext(?:n|ension)?\.?|分机|分機|转|轉|内线|內線)[ \u00a0]*[.:：#]?[ \u00a0]*"
    r"\d{1,6}(?![\dA-Za-z]|[.,\-]\d)",
    re.IGNORECASE,
)
_EXT_START = frozenset(" \u00a0,xXeE分转轉内內")  # what an extension can start with (a quick test)
_DATE_SHAPES = re.compile(
    r"(?:\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}|\d{1,2}[\-/.]\d{1,2}[\-/.](?:\d{4}|\d{2})|\d{4}[\-/.]\d{1,2}|\d{1,2}[\-/.]\d{4})"
)
_CN_MOBILE = re.compile(r"(?:\+?86|0086)?1[3-9]\d{9}")
_ZIP4 = re.compile(r"\d{5}-\d{4}")  # US ZIP+4
_LOCAL_7 = re.compile(r"[2-9]\d{2}[ \-]\d{4}")
_NANP = re.compile(r"\(\d{3}\) ?\d{3}[ \-.]\d{4}|\d{3}[\-.]\d{3}[\-.]\d{4}")

_PHONE_WORDS = re.compile(
    r"(?:phone|tel\b|tel\.|telephone|mobile|cell|fax|call|calling|contact|reach (?:me|us)|dial|sms|whatsapp|"
    r"hotline|registered|answering|"
    r"电话|電話|手机|手機|联系|聯繫|聯係|联络|聯絡|致电|致電|热线|熱線|拨打|撥打|来电|來電|传真|傳真|"
    r"经纪人|經紀人|经理人|經理人|助理|代表[号號]|工作[请請]?[洽找]|[请請]洽)",
    re.IGNORECASE,
)
_PHONE_WORDS_AFTER = re.compile(r"^\W{0,3}(?:office|fax|mobile|cell|home|work|phone|tel|ext)\b", re.IGNORECASE)
_NOT_PHONE_WORDS = re.compile(
    r"(?:order|invoice|receipt|tracking|account|acct|ref(?:erence)?|isbn|issn|doi|serial|sku|zip|postcode|"
    r"postal|card|iban|ssn|qq|id\b|no\.|#|\bproduct\b|\bmodel\b|\bpart\b|\bitem\b|barcode|"
    r"订单|單號|单号|编号|編號|邮编|郵編|账号|帳號|卡号|卡號|身份证|身份證|型号|型號|货号|貨號|条码|條碼|"
    r"群|价格|價格|售价|售價|￥|¥|\$|€|£)",
    re.IGNORECASE,
)
_VERSION_WORDS = re.compile(r"(?:\b(?:v|version|ver\.?|release|build)|版本)\s*$", re.IGNORECASE)

#: regions tried for national numbers written with a trunk 0 or an area code in parentheses
NATIONAL_REGIONS: tuple[str, ...] = (
    "CN", "US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "AU", "IN", "ZA", "TW", "HK",
    "JP", "KR", "SG", "NZ", "IE", "SE", "NO", "DK", "FI", "PL", "BR", "MX",
)
#: country codes accepted without "+" when a separator follows them (852-2335 2385)
_BARE_CC = ("852", "853", "886", "86", "44", "49", "33", "61", "65", "81", "82", "1")

_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
_CN_PROVINCES = frozenset(
    ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82", "83", "91"]
)
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


# --------------------------------------------------------------------------- validators


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        alt = not alt
    return total % 10 == 0


def _iin_ok(digits: str) -> bool:
    """Issuer prefix and length of the card schemes in use (UATP, JCB, Visa, Mastercard, Amex,
    Diners, Discover, UnionPay, Maestro): refuses timestamps, order numbers and the like."""
    n, d1, d2 = len(digits), digits[0], digits[:2]
    if d1 == "1":
        return n == 15  # UATP, JCB 1800
    if d1 == "2":
        return (n == 16 and 2221 <= int(digits[:4]) <= 2720) or (n == 15 and digits.startswith("2131"))
    if d1 == "3":
        if d2 in ("34", "37"):
            return n == 15
        if d2 == "35":
            return 16 <= n <= 19
        return d2 in ("30", "36", "38", "39") and 14 <= n <= 19
    if d1 == "4":
        return n in (13, 16, 19)
    if d1 in "56":
        return 16 <= n <= 19 or (d2 in ("50", "56", "57", "58", "63", "67") and 12 <= n <= 19)
    return False


def _card_ok(digits: str) -> bool:
    return _iin_ok(digits) and len(set(digits)) > 1 and luhn_ok(digits)


def iban_ok(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def cn_id_ok(s: str) -> bool:
    if s[:2] not in _CN_PROVINCES:
        return False
    try:
        date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    total = sum(int(c) * w for c, w in zip(s[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == s[17].upper()


def _in_urls(text: str) -> list[tuple[int, int]]:
    """Spans of http(s):// and www. URLs (found with str.find: faster than a regex scan)."""
    starts = []
    i = text.find("://")
    while i != -1:
        if text[max(0, i - 5):i].lower() == "https":
            starts.append(i - 5)
        elif text[max(0, i - 4):i].lower() == "http":
            starts.append(i - 4)
        i = text.find("://", i + 3)
    for w in ("www.", "WWW.", "Www."):
        i = text.find(w)
        while i != -1:
            starts.append(i)
            i = text.find(w, i + 4)
    spans: list[tuple[int, int]] = []
    for st in sorted(starts):
        if spans and st < spans[-1][1]:
            continue
        m = _URL_BODY.match(text, st)
        spans.append((st, m.end()))
    return spans


def _emails(text: str) -> Iterator[tuple[int, int]]:
    """E-mail spans, matched only around each '@' (a local part has at most 64 characters)."""
    last = -1
    i = text.find("@")
    while i != -1:
        if i >= last:
            m = _EMAIL.search(text, max(0, i - 64), i + 256)
            while m is not None and m.end() <= i:
                m = _EMAIL.search(text, m.end(), i + 256)
            if m is not None and m.start() <= i < m.end():
                yield m.span()
                last = m.end()
        i = text.find("@", i + 1)


def _inside(spans: list[tuple[int, int]], s: int, e: int) -> bool:
    return any(a <= s and e <= b for a, b in spans)


@lru_cache(maxsize=65536)
def _parsed(number: str, region: str | None):
    """phonenumbers' parse of ``number`` (``region`` None: it carries its country code), or None."""
    import phonenumbers

    try:
        return phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None


def _valid_international(digits: str) -> bool:
    import phonenumbers

    n = _parsed("+" + digits, None)
    return n is not None and phonenumbers.is_valid_number(n)


def _possible_international(digits: str) -> bool:
    import phonenumbers

    n = _parsed("+" + digits, None)
    return n is not None and phonenumbers.is_possible_number(n)


@lru_cache(maxsize=65536)
def _valid_national(digits: str) -> bool:
    import phonenumbers

    for region in NATIONAL_REGIONS:
        n = _parsed(digits, region)
        if n is not None and (phonenumbers.is_valid_number_for_region(n, region) or (
            region == "US" and phonenumbers.is_valid_number(n)  # NANP: Canada etc.
        )):
            return True
    return False


def _phone_context(text: str, s: int, e: int) -> int:
    """+1 a phone word is near (before, or right after), -1 a not-phone word is nearer, 0 neither."""
    before = text[max(0, s - 32):s]
    pos = [m.end() for m in _PHONE_WORDS.finditer(before)]
    neg = [m.end() for m in _NOT_PHONE_WORDS.finditer(before)]
    # a not-phone word nearer than any phone word ("order no.", "QQ"): right before the number, or
    # with no phone word at all
    if neg and (not pos or (neg[-1] >= pos[-1] and before[neg[-1]:].strip(" :：#.\u00a0") == "")):
        return -1
    if pos:
        return 1
    if _PHONE_WORDS_AFTER.match(text[e:e + 16]):
        return 1
    return 0


def _phone_ok(text: str, s: int, e: int, after: int | None = None) -> bool:
    """Is ``text[s:e]`` a phone number? ``after``: where the text goes on after an extension of
    it (:data:`_EXT`), judged instead of ``e`` for what the number is glued to."""
    cand = text[s:e]
    digits = _NON_DIGITS.sub("", cand)
    n = len(digits)
    if n < 7 or n > 15:
        return False
    prev = text[s - 1] if s else " "
    prev2 = text[s - 2] if s > 1 else " "
    a = e if after is None else after
    nxt = text[a] if a < len(text) else " "
    nxt2 = text[a + 1] if a + 1 < len(text) else " "
    mobile = _CN_MOBILE.fullmatch(digits) is not None
    # a list of mobiles written "13812345678/13912345678"
    if mobile and ((prev == "/" and prev2.isdigit()) or (nxt == "/" and nxt2.isdigit())):
        prev = " " if prev == "/" else prev
        nxt = " " if nxt == "/" else nxt
    # glued to other numbers / identifiers / decimals; a product code ("15912345678-A")
    if nxt == "-" and nxt2.isascii() and nxt2.isalpha() and not _PHONE_WORDS_AFTER.match(text[a:a + 16]):
        return False
    if prev in "/=_#%&" or (prev in ".,-:" and prev2.isdigit()) or (prev.isascii() and prev.isalnum()
                                                                   and cand[0] != "+" and not mobile):
        return False
    if nxt in "%" or (nxt in ".,-:/" and nxt2.isdigit()) or (nxt.isascii() and nxt.isalnum() and cand[0] != "+"
                                                            and not mobile):
        return False
    if prev in "$€£¥￥" or (prev == " " and prev2 in "$€£¥￥"):
        return False
    if "." in cand and cand[0] != "+":
        groups = re.split(r"[^\d]+", cand.strip("+()"))
        if any(len(g) < 2 for g in groups) or len(groups) == 2:
            return False  # decimals, versions
    if _DATE_SHAPES.fullmatch(cand.strip("()")):
        return False
    ctx = _phone_context(text, s, a)
    if after is not None and after > e and ctx == 0:
        x = _EXT.match(text, e)  # (None for a dash and digits: "010-6552 9988-8021")
        if x is not None and not x.group("x"):
            ctx = 1  # "ext. 12", "分机 123" after the number say it is a phone
    if ctx < 0 or (ctx == 0 and _ZIP4.fullmatch(cand)):
        return False
    if cand[0] == "+" or cand.startswith("00"):  # 00 is the international prefix almost everywhere
        intl = digits[2:] if cand.startswith("00") else digits
        return _valid_international(intl) or (len(intl) >= 8 and _possible_international(intl))
    if mobile:
        return True
    if ctx > 0 and n <= 12:
        return True
    groups = [len(g) for g in _LEADING_DIGITS.findall(cand)]
    # scores, serial numbers and lists ("7-6 (8-6) 7-5", "01 02 03 04") are not written like phones:
    # no one-digit group, and a group of 3+ digits unless it is the French 5 x 2 layout
    if len(groups) > 1 and (min(groups) >= 2 or n >= 10) and (max(groups) >= 3 or len(groups) == 5):
        if _LOCAL_7.fullmatch(cand):
            return True
        if _NANP.fullmatch(cand) and _valid_national(digits):
            return True
        if (cand[0] == "0" or cand[0] == "(") and _valid_national(cand):
            return True
        head = _LEADING_DIGITS.match(cand)
        if head and head.group(0) in _BARE_CC and len(cand) > head.end() and _valid_international(digits):
            return True
    return False


# --------------------------------------------------------------------------- finding


def _quick_types(text: str) -> frozenset[str]:
    """Types ``text`` can hold at all, from cheap checks (the batch path uses RE2 instead)."""
    email = "@" in text
    if _DIGIT.search(text) is None:
        return _EMAIL_ONLY if email else _NONE
    return _ALL if email else _NO_EMAIL


def _candidates(text: str, types: frozenset[str]) -> list[PiiSpan]:
    out: list[PiiSpan] = []
    if "email" in types:
        out += [PiiSpan("email", a, b) for a, b in _emails(text)]
    urls = _in_urls(text) if types - _EMAIL_ONLY else []
    for m in (_IBAN.finditer(text) if "iban" in types else ()):
        raw = m.group(0)
        compact = raw.replace(" ", "")
        want = _IBAN_LENGTHS.get(compact[:2])
        if want is None or len(compact) < want:
            continue
        # trim trailing characters beyond the country's length (a following code word)
        cut, seen = len(raw), 0
        for i, ch in enumerate(raw):
            if ch != " ":
                seen += 1
                if seen == want:
                    cut = i + 1
                    break
        nxt = raw[cut:cut + 1] if cut < len(raw) else text[m.start() + cut:m.start() + cut + 1]
        if nxt and nxt != " " and nxt.isalnum():
            continue
        if iban_ok(compact[:want]):
            out.append(PiiSpan("iban", m.start(), m.start() + cut))
    for m in (_CN_ID.finditer(text) if "cn_id" in types else ()):
        if cn_id_ok(m.group(0)):
            out.append(PiiSpan("cn_id", *m.span()))
    for m in (_CARD.finditer(text) if "card" in types else ()):
        if _inside(urls, *m.span()):
            continue
        digits = re.sub(r"[ \-]", "", m.group(0))
        if _card_ok(digits):
            out.append(PiiSpan("card", *m.span()))
        elif len(m.group(0)) > 20 and m.group(0)[19] == m.group(1) and _card_ok(digits[:16]):
            out.append(PiiSpan("card", m.start(), m.start() + 19))  # 4-4-4-4 and a short group: the 16 alone
    if "ip" in types and "." in text:
        for m in _IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(m.group(0))
            except ValueError:
                continue
            if _VERSION_WORDS.search(text[max(0, m.start() - 12):m.start()]):
                continue
            out.append(PiiSpan("ip", *m.span()))
    if "ip" in types and ("::" in text or text.count(":") >= 5):
        for m in _IPV6.finditer(text):
            cand = m.group(0)
            groups = [g for g in re.split(r"[:.]", cand) if g]
            if not any(ch.isdigit() for ch in cand) or (len(groups) < 4 and ("::" not in cand or len(groups) < 2)):
                continue
            try:
                ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            out.append(PiiSpan("ip", *m.span()))
    if "phone" in types:
        out += _phones(text.replace("（", "(").replace("）", ")") if "（" in text else text, urls)
    return out


def _phones(text: str, urls: list[tuple[int, int]]) -> list[PiiSpan]:
    out = []
    for run in _PHONE_RUN.finditer(text):
        # the precise candidate pattern, only inside a run of phone characters (much faster)
        a, b = run.span()
        if a and text[a - 1] in "+(":
            a -= 1
        for m in _PHONE.finditer(text, a, b):
            s, e = m.span()
            if text[s] == "(" and ")" not in text[s:e]:
                s += 1
            if _inside(urls, s, e):
                continue
            x = _EXT.match(text, e) if text[e:e + 1] in _EXT_START else None
            end = x.end() if x else e
            if _phone_ok(text, s, e, end if x else None):
                # "(+86)138…": the opening parenthesis goes with its number
                out.append(PiiSpan("phone", s - 1 if text[s] == "+" and s and text[s - 1] == "(" and ")" in text[s:e]
                                   else s, end))
                continue
            # "010-6552 9988-8021": a landline, a dash, its extension
            dash = text.rfind("-", s, e)
            if x is None and dash > s and e - dash <= 6 and text[s] in "0(+" and _phone_ok(text, s, dash, e):
                out.append(PiiSpan("phone", s, e))
                continue
            # a number glued by a space to the phone number ("since 2015 138 0013 8000"): drop the
            # first or the last group and judge again
            gaps = [g.span() for g in _GROUP_GAP.finditer(text, s, e)]
            if len(gaps) >= 2:
                for s2, e2 in ((gaps[0][1], e), (s, gaps[-1][0])):
                    if _phone_ok(text, s2, e2):
                        out.append(PiiSpan("phone", s2, e2))
                        break
    return out


def _find_once(text: str, types: frozenset[str]) -> list[PiiSpan]:
    cands = _candidates(text, types)
    if not cands:
        return []
    cands.sort(key=lambda sp: (_RANK[sp.type], sp.start, -sp.end))
    taken: list[PiiSpan] = []
    for sp in cands:
        if all(sp.end <= t.start or sp.start >= t.end for t in taken):
            taken.append(sp)
    taken.sort(key=lambda sp: sp.start)
    return taken


def _to_input_offsets(spans: list[PiiSpan], found: list[PiiSpan]) -> list[PiiSpan]:
    """Spans ``found`` in the redacted text, mapped back to offsets of the input text (spans that
    touch a placeholder are dropped: they cannot occur, placeholders hold no PII characters)."""
    out = []
    for f in found:
        shift, ok = 0, True
        for sp in spans:
            ph_start = sp.start + shift
            ph_end = ph_start + len(PLACEHOLDERS[sp.type])
            if ph_end <= f.start:
                shift += len(PLACEHOLDERS[sp.type]) - (sp.end - sp.start)
            elif ph_start < f.end:
                ok = False
                break
            else:
                break
        if ok:
            out.append(PiiSpan(f.type, f.start - shift, f.end - shift))
    return out


#: characters that hide PII from the patterns without changing what a reader sees: full-width
#: forms of ASCII letters, digits and the signs of addresses and numbers (``ｊｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ``,
#: ``＋８６ １３８…``) are matched as their ASCII forms; zero-width characters and soft hyphens
#: inside an address or number are skipped. (Not the full-width punctuation of Chinese text, so
#: that a Chinese text keeps the fast path: "，：（）" are not folded.)
_FULLWIDTH = {0xFF01 + i: 0x21 + i for i in range(0x5E) if chr(0x21 + i).isalnum() or chr(0x21 + i) in "@.+-_"}
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
_HIDING_CHARS = "".join(chr(c) for c in sorted(_FULLWIDTH)) + _INVISIBLE
_HIDING = re.compile(f"[{re.escape(_HIDING_CHARS)}]")
#: the same, as RE2 for the batch pre-filter
HIDING_RE2 = "[" + "".join(f"\\x{{{ord(c):04X}}}" for c in _HIDING_CHARS) + "]"


def _unhidden(text: str) -> tuple[str, list[int] | None]:
    """``text`` with :data:`_FULLWIDTH` forms as ASCII and :data:`_INVISIBLE` characters dropped,
    and (when characters were dropped) the input index of each character of the result."""
    folded = text.translate(_FULLWIDTH)  # (one character for one: offsets unchanged)
    if not any(c in folded for c in _INVISIBLE):
        return folded, None
    keep = [i for i, c in enumerate(folded) if c not in _INVISIBLE]
    return "".join(folded[i] for i in keep), keep


def find_pii(text: str, types: frozenset[str] | None = None) -> list[PiiSpan]:
    """Structured PII spans of ``text``: sorted by start, non-overlapping, input offsets.

    Full-width forms and zero-width characters do not hide PII (:func:`_unhidden`): the spans are
    found on the unhidden text and cover the input characters they came from. See
    :func:`_find_pii` for the rest."""
    if not text:
        return []
    if _HIDING.search(text) is None:
        return _find_pii(text, types)
    plain, index = _unhidden(text)
    spans = _find_pii(plain, None)
    if index is None:
        return spans
    index.append(len(text))
    return [PiiSpan(sp.type, index[sp.start], index[sp.end - 1] + 1) for sp in spans]


def _find_pii(text: str, types: frozenset[str] | None = None) -> list[PiiSpan]:
    """Structured PII spans of ``text``: sorted by start, non-overlapping, input offsets.

    These are exactly the spans :func:`redact` replaces, and the redacted text holds none: when
    replacing brings a phone word next to a number that was not one in its context
    ("Call +44 20 7946 0958 / +44 20 7946 0959 at 1234567"), that number is added too, until
    nothing more is found. ``types`` limits the scans to types the text can hold (an optimisation
    for the batch path)."""
    if not text:
        return []
    if types is None:
        types = _quick_types(text)
    if not types:
        return []
    spans = _find_once(text, types)
    for _ in range(8):
        if not spans:
            break
        red = _apply(text, spans)
        more = _to_input_offsets(spans, _find_once(red, _quick_types(red) & types))
        if not more:
            break
        spans = sorted(spans + more, key=lambda sp: sp.start)
    return spans


def _apply(text: str, spans: list[PiiSpan]) -> str:
    parts, pos = [], 0
    for sp in spans:
        parts.append(text[pos:sp.start])
        parts.append(PLACEHOLDERS[sp.type])
        pos = sp.end
    parts.append(text[pos:])
    return "".join(parts)


def replace_spans(text: str, spans: list[PiiSpan]) -> str:
    """``text`` with each (sorted, non-overlapping) span replaced by its type's placeholder."""
    return _apply(text, spans) if spans else text


def redact(text: str) -> tuple[str, list[PiiSpan]]:
    """``text`` with each PII span replaced by its placeholder, and the spans (input offsets)."""
    spans = find_pii(text)
    return (_apply(text, spans) if spans else text), spans


def _chunks(texts) -> list[pa.Array]:
    if isinstance(texts, pa.ChunkedArray):
        return list(texts.chunks)
    if isinstance(texts, pa.Array):
        return [texts]
    if isinstance(texts, list) and all(isinstance(a, pa.Array) for a in texts):
        return texts
    return [pa.array(list(texts), pa.string())]


def _type_flags(arr: pa.Array) -> list[frozenset[str] | None]:
    """Per row, the types whose RE2 pre-filter hits (vectorised; nulls hold nothing); None for a
    row with characters that can hide PII (:func:`find_pii` decides on it)."""
    if len(arr) == 0:
        return []
    cols = [pc.match_substring_regex(arr, PREFILTERS[t]).fill_null(False).to_pylist() for t in PII_TYPES]
    hiding = pc.match_substring_regex(arr, HIDING_RE2).fill_null(False).to_pylist()
    cache: dict[tuple[bool, ...], frozenset[str]] = {}
    out: list[frozenset[str] | None] = []
    for row, hides in zip(zip(*cols), hiding):
        if hides:
            out.append(None)
            continue
        f = cache.get(row)
        if f is None:
            f = cache[row] = frozenset(t for t, hit in zip(PII_TYPES, row) if hit)
        out.append(f)
    return out


def find_pii_batch(texts: pa.Array | pa.ChunkedArray | Iterable[str | None]) -> Iterator[tuple[str | None, list[PiiSpan]]]:
    """(text, spans) per row of a batch, in order; the same spans as :func:`find_pii`, with each
    type's scan skipped on rows its RE2 pre-filter rules out."""
    for arr in _chunks(texts):
        for v, types in zip(arr.to_pylist(), _type_flags(arr)):
            yield v, (find_pii(v, types) if v and (types is None or types) else [])


def redact_batch(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, dict[str, pa.Array]]:
    """Redact a batch: redacted texts (nulls stay null, same string type as the input) and, per
    type, an int32 array with the number of spans per row."""
    chunks = _chunks(texts)
    typ = chunks[0].type if chunks else pa.string()
    out: list[str | None] = []
    counts: dict[str, list[int]] = {t: [] for t in PII_TYPES}
    for v, spans in find_pii_batch(chunks):
        per = dict.fromkeys(PII_TYPES, 0)
        for sp in spans:
            per[sp.type] += 1
        out.append(_apply(v, spans) if spans else v)
        for t in PII_TYPES:
            counts[t].append(per[t])
    return pa.array(out, typ), {t: pa.array(c, pa.int32()) for t, c in counts.items()}


def count_pii_by_type(texts: pa.Array | pa.ChunkedArray | Iterable[str | None]) -> dict[str, int]:
    """Structured PII spans still present, per type."""
    total = dict.fromkeys(PII_TYPES, 0)
    for _, spans in find_pii_batch(texts):
        for sp in spans:
            total[sp.type] += 1
    return total


def count_pii(texts: pa.Array | pa.ChunkedArray | Iterable[str | None]) -> int:
    """Number of structured PII spans still present in ``texts`` (0 for a redacted layer)."""
    return sum(count_pii_by_type(texts).values())


# ------------------------------------------------------------------ URLs

#: an URL that can hold PII at all (RE2, for a column of URLs): an @ (plain or percent-encoded) or
#: a run of digits; the others are left alone without parsing
URL_PREFILTER = r"@|%40|\d{6}|%EF%BC%A0"


def redact_url(url: str) -> tuple[str, list[str]]:
    """``url`` with each path segment, query key or value and fragment that holds PII (read
    percent-decoded, as :func:`find_pii` reads text) rewritten with that PII replaced by its
    placeholder, and any user name or password dropped; and the types found. An URL without PII
    comes back as it was, byte for byte."""
    from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url, []
    found: list[str] = []

    def fix(raw: str) -> str:
        text = unquote_plus(raw)
        spans = find_pii(text)
        if not spans:
            return raw
        found.extend(sp.type for sp in spans)
        return quote(_apply(text, spans), safe="")

    netloc = parts.netloc
    if "@" in netloc:  # user:password@host: credentials, or an address, never released
        found.append("email" if find_pii(netloc.rpartition("@")[0]) else "credentials")
        netloc = netloc.rpartition("@")[2]
    path = "/".join(fix(seg) for seg in parts.path.split("/"))
    query = "&".join((fix(k) + "=" + fix(v)) if sep else fix(k)
                     for k, sep, v in (item.partition("=") for item in parts.query.split("&"))) if parts.query else ""
    fragment = fix(parts.fragment) if parts.fragment else ""
    if not found:
        return url, []
    return urlunsplit((parts.scheme, netloc, path, query, fragment)), found


def redact_urls(urls: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, list[list[str]]]:
    """:func:`redact_url` over a column: the URLs (redacted where they hold PII) and, per row, the
    types found. The pre-filter runs first, vectorised; only the URLs it lets through are parsed."""
    out: list[str | None] = []
    found: list[list[str]] = []
    for arr in _chunks(urls):
        maybe = pc.match_substring_regex(arr, URL_PREFILTER).fill_null(False).to_pylist()
        for v, m in zip(arr.to_pylist(), maybe):
            new, types = redact_url(v) if m else (v, [])
            out.append(new)
            found.append(types)
    return pa.array(out, pa.string()), found
